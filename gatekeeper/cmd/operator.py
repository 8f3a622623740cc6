"""`gatekeeper status | builds | build | recheck`: what an operator asks the web API, as tables or JSON.

Where the server is: `--url`, else $GATEKEEPER_URL, else the config's web listen address and port.  The admin
token for `recheck`: `--token`, else $GATEKEEPER_WEB_ADMIN_TOKEN or the config's web admin-token.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from gatekeeper.cmd import args as types
from gatekeeper.cmd.web_client import EXIT_CODES_HELP, EXIT_NOT_FOUND, EXIT_USAGE, ApiError, WebClient
from gatekeeper.config.settings import load_service_config


def _common(parser: argparse.ArgumentParser, admin: bool = False) -> None:
    parser.add_argument("-c", "--config", metavar="FILE", help="service config (default: $GATEKEEPER_CONFIG or none)")
    parser.add_argument("--url", help="web server URL (default: $GATEKEEPER_URL, else from the config)")
    if admin:
        parser.add_argument("--token", help="admin token (default: $GATEKEEPER_WEB_ADMIN_TOKEN or the config)")
        parser.add_argument("--user", default=os.environ.get("USER", ""), help="who you are, for the audit log")


def register(subparsers: argparse._SubParsersAction) -> None:
    kw = {"epilog": EXIT_CODES_HELP}
    p = subparsers.add_parser("status", help="pipelines, queues, changes and their jobs", **kw)
    _common(p)
    p.add_argument("--json", action="store_true", help="print the status document (docs/status-api.md)")
    p.add_argument("--pipeline", help="only this pipeline")
    p.add_argument("--change", metavar="N[,P]", type=types.change_or_key,
                   help="only this change (exit 4 when it is in no pipeline)")
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser("builds", help="build history, newest first, with filters", **kw)
    _common(p)
    for name in ("project", "job", "result", "pipeline"):
        p.add_argument(f"--{name}", help=f"only builds with this {name}")
    p.add_argument("--change", type=types.positive_int, metavar="N", help="only builds of this change number")
    p.add_argument("--limit", type=types.positive_int, default=20, help="how many (default 20)")
    p.add_argument("--json", action="store_true", help="print the build records as JSON")
    p.set_defaults(func=cmd_builds)

    p = subparsers.add_parser("build", help="one build: result, node, log files, console", **kw)
    _common(p)
    p.add_argument("build_id", metavar="BUILD", type=types.identifier("build"),
                   help="the build id (from `gatekeeper builds` or the status)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_build)

    p = subparsers.add_parser("recheck", help="run a change's jobs again in a pipeline (admin token)", **kw)
    _common(p, admin=True)
    p.add_argument("change", metavar="N[,P]", type=types.change_or_key,
                   help="the change; with only N, the patch set it has in the queue")
    p.add_argument("--pipeline", default="check", help="pipeline to run it in (default: check)")
    p.set_defaults(func=cmd_recheck)


def _client(args: argparse.Namespace, admin: bool = False) -> WebClient:
    config = load_service_config(args.config)
    url, origin = args.url, "--url"
    if not url and os.environ.get("GATEKEEPER_URL"):
        url, origin = os.environ["GATEKEEPER_URL"], "GATEKEEPER_URL"
    if not url:
        host = config.get("web", "listen", "127.0.0.1")
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{config.get('web', 'port', 9000)}"
        origin = f"{config.source}: web.listen and web.port"
    _check_url(url, origin)
    token = None
    if admin:
        token = args.token or config.get("web", "admin-token")
    return WebClient(url, token=token, user=getattr(args, "user", None) or None)


def _check_url(url: str, origin: str) -> None:
    """An http(s) URL with a host, or an ApiError (usage) naming where the URL came from."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ApiError(f'{origin}: "{url}" is not a URL ({exc})', EXIT_USAGE) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(f'{origin}: "{url}" is not an http:// or https:// URL of the web server', EXIT_USAGE)


def _run(fn: Any, args: argparse.Namespace) -> int:
    try:
        return fn(args)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t else ""


# -- status --------------------------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    return _run(_status, args)


def _status(args: argparse.Namespace) -> int:
    client = _client(args)
    status = client.get("/api/v1/status")
    pipelines = [p for p in status["pipelines"] if not args.pipeline or p["name"] == args.pipeline]
    if args.pipeline and not pipelines:
        known = ", ".join(p["name"] for p in status["pipelines"])
        raise ApiError(f'no pipeline "{args.pipeline}" (known: {known})', EXIT_NOT_FOUND)
    if args.change:
        for p in pipelines:
            for q in p["queues"]:
                q["items"] = [i for i in q["items"] if args.change in (i["change"]["key"],
                                                                        str(i["change"]["number"]))]
        if not any(q["items"] for p in pipelines for q in p["queues"]):
            raise ApiError(f"change {args.change} is in no pipeline", EXIT_NOT_FOUND)
    if args.json:
        print(json.dumps({**status, "pipelines": pipelines}, indent=1))
        return 0
    for outlier in status.get("provider_outliers") or []:
        print(f"! provider {outlier['provider']}: {outlier['description']}")
    if not pipelines:
        print("no pipelines (has a layout been published?)")
    for p in pipelines:
        items = [i for q in p["queues"] for i in q["items"]]
        print(f"{p['name']} ({p['manager'] or 'pipeline'}): {len(items)} item{'s' if len(items) != 1 else ''}")
        for q in p["queues"]:
            if not q["items"]:
                continue
            print(f"  queue {q['name']}" + (f" (window {q['window']})" if q["window"] else ""))
            for item in q["items"]:
                c = item["change"]
                flags = [] if item["active"] else ["inactive"]
                if not item["live"]:
                    flags.append("not live")
                if item["failing"]:
                    flags.append("FAILING")
                remaining = "" if item["remaining_time"] is None else f", {_duration(item['remaining_time'])} left"
                eta = item.get("eta") or {}
                if eta.get("p50") is not None:
                    remaining = f", ETA {_duration(eta['p50'])}-{_duration(eta['p90'])}"
                print(f"    {c['key']:10} {c['project']:24} in queue {_duration(item['resident_time'])}"
                      f"{remaining}{' [' + ', '.join(flags) + ']' if flags else ''}")
                for reason in item["failing_reasons"]:
                    print(f"      ! {reason}")
                if item["live"]:
                    for job in item["jobs"]:
                        state = job["result"] or job["state"]
                        timing = (f"{_duration(job['elapsed'])}/{_duration(job['estimated'])}"
                                  if job["state"] == "running" else _duration(job["elapsed"])
                                  if job["elapsed"] is not None else "")
                        link = job["console_url"] or job["log_url"] or ""
                        link = client.url + link if link.startswith("/") else link
                        node = job.get("node") or {}
                        where = f" on {node['name']} ({node['provider']})" if node and job["state"] == "running" else ""
                        print(f"      {job['name']:30} {state:12} {timing:14} {link}{where}")
                        for line in (job.get("summary") or "").splitlines():
                            print(f"        | {line}")
    return 0


# -- builds ----------------------------------------------------------------------------------------------------
def cmd_builds(args: argparse.Namespace) -> int:
    return _run(_builds, args)


def _builds(args: argparse.Namespace) -> int:
    rows = _client(args).get("/api/v1/builds", project=args.project, job=args.job, result=args.result,
                             pipeline=args.pipeline, change=args.change, limit=args.limit)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'build':12} {'job':24} {'project':20} {'change':8} {'pipeline':10} {'result':14} {'duration':>9} ended")
    for r in rows:
        change = f"{r['change']},{r['patchset']}" if r["change"] else ""
        result = r["result"] + ("" if r["final"] else "*")
        print(f"{r['uuid'][:12]:12} {r['job'][:24]:24} {r['project'][:20]:20} {change:8} {r['pipeline'][:10]:10} "
              f"{result:14} {_duration(r['duration']):>9} {_when(r['end_time'])}")
    if any(not r["final"] for r in rows):
        print("* retried attempt (an infrastructure failure; not the change's fault)")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    return _run(_build, args)


def _build(args: argparse.Namespace) -> int:
    client = _client(args)
    b = client.get(f"/api/v1/builds/{args.build_id}")
    if args.json:
        print(json.dumps(b, indent=1))
        return 0
    change = f"{b['change']},{b['patchset']}" if b.get("change") else ""
    lines = [
        ("build", b["uuid"]), ("job", b["job"]), ("project", b["project"]), ("change", change),
        ("pipeline", b["pipeline"]), ("result", b.get("result") or b.get("state", "")),
        ("message", b.get("message", "")), ("attempt", str(b.get("attempt", ""))),
        ("started", _when(b.get("start_time"))), ("ended", _when(b.get("end_time"))),
        ("node", " ".join(x for x in (b.get("node_name"), b.get("node_label"), b.get("node_provider")) if x)),
        ("logs", b.get("log_url") or ""),
    ]
    if b.get("console_url"):
        lines.append(("console", client.url + b["console_url"]))
    if b.get("failure_class"):
        lines.append(("class", b["failure_class"]))
    lines += [("known bug", f"{s['id']}: {s.get('title', '')} {s.get('url', '')}".rstrip())
              for s in b.get("signatures") or []]
    for key, value in lines:
        if value:
            print(f"{key:9} {value}")
    for line in (b.get("summary") or "").splitlines():
        print(f"  | {line}")
    for f in b.get("logs", []):
        print(f"          {f['url']} ({f['size']} bytes)")
    return 0


# -- recheck -----------------------------------------------------------------------------------------------------
def cmd_recheck(args: argparse.Namespace) -> int:
    return _run(_recheck, args)


def _recheck(args: argparse.Namespace) -> int:
    client = _client(args, admin=True)
    key = args.change
    if "," not in key:
        items = client.get(f"/api/v1/status/change/{key}", pipeline=args.pipeline)  # 404 -> exit 4
        key = items[0]["change"]["key"]
    client.post("/api/v1/admin/retrigger", {"pipeline": args.pipeline, "change": key})
    print(f"{key}: enqueued again in {args.pipeline}")
    return 0
