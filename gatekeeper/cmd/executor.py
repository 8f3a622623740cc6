"""`gatekeeper executor`: run an executor service until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Callable

from gatekeeper.cmd import args as types
from gatekeeper.cmd.signals import wait_until_set
from gatekeeper.config.settings import ServiceConfig, load_service_config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("executor", help="run an executor: build requests from ZooKeeper, jobs on nodes over SSH")
    parser.add_argument("-c", "--config", metavar="FILE", help="service config (default: $GATEKEEPER_CONFIG or none)")
    parser.add_argument("--concurrency", type=types.positive_int, help="builds at once (default: executor.concurrency)")
    parser.add_argument("--console-host", default="127.0.0.1", help="address of the live console HTTP server")
    parser.add_argument("--console-port", type=types.port, default=0, help="its port (default: any free port)")
    parser.add_argument("--transfer", choices=("tar", "rsync"), default="tar",
                        help="how the workspace is copied to the node (default: tar over the build's SSH connection)")
    parser.set_defaults(func=run)

    parser = sub.add_parser("signatures", help="known-bug signatures of the layout and the failed builds each matched")
    parser.add_argument("-c", "--config", metavar="FILE", help="service config (default: $GATEKEEPER_CONFIG or none)")
    parser.add_argument("--hits", type=types.count, default=3, metavar="N",
                        help="newest hits listed per signature (default 3)")
    parser.add_argument("--json", action="store_true", help="print the signatures with their counts as JSON")
    parser.set_defaults(func=list_signatures)


def url_for_project(config: ServiceConfig) -> Callable[[str], str]:
    """project -> Gerrit fetch URL, from the `gerrit` section: `git-url` (with `{project}` or a prefix), else SSH."""
    gerrit = config.section("gerrit")
    template = gerrit.get("git-url")

    def url(project: str) -> str:
        if template:
            return template.format(project=project) if "{project}" in template else f"{template.rstrip('/')}/{project}"
        return f"ssh://{gerrit.get('user', 'gatekeeper')}@{gerrit.get('host', '127.0.0.1')}:" \
               f"{gerrit.get('port', 29418)}/{project}"

    return url


def run(args: argparse.Namespace) -> int:
    from gatekeeper.executor.build import ExecutorSettings
    from gatekeeper.executor.logs import LogStore
    from gatekeeper.executor.service import ExecutorService
    from gatekeeper.gitrepo import ssh_command
    from gatekeeper.zk.client import ZKClient

    config = load_service_config(args.config)
    work_dir = str(config.path("executor", "work-dir"))
    os.makedirs(work_dir, exist_ok=True)
    settings = ExecutorSettings(
        work_dir=work_dir,
        hold_hours=float(config.get("executor", "hold-hours", 24)),
        max_held=int(config.get("executor", "max-held", 10)),
        transfer=args.transfer,
    )
    key = config.get("gerrit", "key")
    ssh = ssh_command(os.path.expanduser(key), os.path.join(work_dir, "known_hosts")) if key else None
    store = LogStore(str(config.path("log-store", "dir")), config.get("log-store", "url"))
    zk = ZKClient(config.get("zookeeper", "hosts"), **config.zk_kwargs()).start()
    service = ExecutorService(zk, settings, store, url_for_project(config), ssh=ssh,
                              concurrency=args.concurrency or int(config.get("executor", "concurrency", 4)),
                              console_host=args.console_host, console_port=args.console_port)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    service.start()
    print(f"executor {service.name}: live consoles at {service.console_server.url('<build-id>')}", flush=True)
    try:
        wait_until_set(done)
    finally:
        service.stop()
        zk.stop()
    return 0


def list_signatures(args: argparse.Namespace) -> int:
    """`gatekeeper signatures`: each signature of the published layout with its hits (last day, week, kept, ever)."""
    import json
    import sys
    import time

    from gatekeeper.config.store import read_layout
    from gatekeeper.zk.client import ZKClient
    from gatekeeper.zk.signatures import hit_counts, read_hits, signature_totals

    if args.hits < 0:
        print(f"error: --hits {args.hits}: expected a count of 0 or more", file=sys.stderr)
        return 2
    config = load_service_config(args.config)
    zk = ZKClient(config.get("zookeeper", "hosts"), **config.zk_kwargs()).start()
    try:
        layout = read_layout(zk)
        hits = read_hits(zk)
        totals = signature_totals(zk)
    finally:
        zk.stop()
    now = time.time()
    rows = hit_counts(layout.signatures.values() if layout is not None else (), hits, now, totals)
    if args.json:
        for row in rows:
            newest = _newest(hits, row["id"], args.hits)
            row["hits"] = [{k: v for k, v in h.to_dict().items() if k != "_v"} for h in newest]
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no known-bug signatures in the layout, and no hits")
        return 0
    print(f"{'signature':16} {'24h':>5} {'7d':>5} {'kept':>6} {'total':>7}  title")
    for row in rows:
        gone = "" if row["in_layout"] else " (no longer in the layout)"
        print(f"{row['id'][:16]:16} {row['day']:>5} {row['week']:>5} {row['total']:>6} {row['all_time']:>7}  "
              f"{row['title']}{gone}")
        if row["url"]:
            print(f"{'':16} {row['url']}")
        for h in reversed(_newest(hits, row["id"], args.hits)):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(h.time))
            print(f"{'':16}   {when} {h.job} {h.change or '-'} {h.pipeline} on {h.provider or '?'} {h.log_url}")
    return 0


def _newest(hits: list, signature: str, count: int) -> list:
    matched = [h for h in hits if h.signature == signature]
    return matched[max(0, len(matched) - count):] if count else []
