"""The web service: status JSON and pages, build history, nodes and images, /metrics, logs, and the admin API.

    web = WebService(zk, port=0, admin_token="...", history=HistoryDB(url), log_dir=..., log_url=...).start()
    web.port  # the bound port (0 asks the OS for a free one)
    web.stop()

Read-only endpoints are public; `POST /api/v1/admin/<action>` needs `Authorization: Bearer <admin-token>`.
The routes are listed in docs/status-api.md.
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import gatekeeper
from gatekeeper.metrics import prometheus
from gatekeeper.metrics.gate import GateSnapshot, StatsdReporter, gate_metrics
from gatekeeper.metrics.statsd import StatsdClient
from gatekeeper.web import sources
from gatekeeper.web.admin import Admin, AdminError, check_token, describe_request
from gatekeeper.web.logstore import LogStore
from gatekeeper.web.status import HistoryInsight, find_item, pipeline_status, started_builds, status_document
from gatekeeper.zk.client import ZKClient

log = logging.getLogger("gatekeeper.web")
audit = logging.getLogger("gatekeeper.web.audit")

STATIC = Path(__file__).parent / "static"
PAGES = {"/": "status.html", "/status": "status.html", "/builds": "builds.html", "/nodes": "nodes.html",
         "/images": "images.html", "/holds": "holds.html"}
MAX_BODY = 64 * 1024
USER = re.compile(r"^[\w.@+-]{1,64}$")
STATUS_TTL = 1.0  # seconds a status document is reused: many pollers, one ZooKeeper read
LAYOUT_TTL = 30.0
ESTIMATE_TTL = 60.0


class _TTLCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._values: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._values.get(key)
            if hit and now - hit[0] < self.ttl:
                return hit[1]
        value = make()
        with self._lock:
            self._values[key] = (now, value)
        return value


class WebService:
    """The `gatekeeper web` service; embeddable (the all-in-one runs one in its process)."""

    def __init__(
        self,
        zk: ZKClient,
        *,
        host: str = "127.0.0.1",
        port: int = 9000,
        admin_token: str | None = None,
        history: Any = None,  # gatekeeper.history.db.HistoryDB, or None: no history pages
        log_dir: str | Path | None = None,
        log_url: str | None = None,
        state_loader: sources.PipelineStateLoader | None = None,
        layout_loader: Callable[[], Any] | None = None,
        console_bases: Callable[[], list[str]] | None = None,
        statsd: StatsdClient | None = None,
        statsd_interval: float = 10.0,
        management_timeout: float = 30.0,
    ) -> None:
        self.zk = zk
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.admin_token = admin_token or None
        self.history = history
        self.logs = LogStore(Path(log_dir) if log_dir else None, log_url)
        self.state_loader = state_loader or sources.StoreStateLoader()
        self.layout_loader = layout_loader or self._read_layout
        self.console_bases = console_bases or (lambda: sources.console_bases(self.zk))
        self.admin = Admin(zk, self.pipeline_names, management_timeout)
        self._status_cache = _TTLCache(STATUS_TTL)
        self._layout_cache = _TTLCache(LAYOUT_TTL)
        self._estimates = _TTLCache(ESTIMATE_TTL)
        self.insight = HistoryInsight(history) if history is not None else None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._statsd = StatsdReporter(statsd, self.snapshot, statsd_interval) if statsd else None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> WebService:
        handler = type("Handler", (_Handler,), {"service": self})
        self._httpd = ThreadingHTTPServer((self.host, self.requested_port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        if self.logs.root is not None and not self.logs.url:
            self.logs.url = f"{self.url}/logs"  # no log-store URL given: this server is the log server
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="web", daemon=True)
        self._thread.start()
        if self._statsd:
            self._statsd.start()
        log.info("web: serving on http://%s:%s/ (admin API %s)", self.host, self.port,
                 "enabled" if self.admin_token else "disabled: no admin-token")
        return self

    def stop(self) -> None:
        if self._statsd:
            self._statsd.stop()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- what the pages show -------------------------------------------------------------------------------------
    def _read_layout(self) -> Any:
        """The layout published in ZooKeeper (what the schedulers run)."""
        from gatekeeper.config.store import read_layout

        try:
            return read_layout(self.zk)
        except Exception:
            log.exception("web: cannot read the published layout; showing pipelines with state only")
            return None

    def layout(self) -> Any:
        return self._layout_cache.get("layout", self.layout_loader)

    def pipeline_names(self) -> list[str]:
        return [name for name, _, _ in sources.pipeline_names(self.zk, self.layout())]

    def estimate(self, project: str, job: str) -> float | None:
        if self.history is None:
            return None
        return self._estimates.get((project, job), lambda: self.history.estimate(project, job))

    def status(self) -> dict[str, Any]:
        return self._status_cache.get("status", self._build_status)

    def _build_status(self) -> dict[str, Any]:
        now = time.time()
        pipelines = []
        starts = started_builds(self.zk)
        for name, manager, description in sources.pipeline_names(self.zk, self.layout()):
            try:
                state = self.state_loader(self.zk, name)
            except Exception:
                log.exception("web: cannot read the state of pipeline %s", name)
                state = None
            pipelines.append(pipeline_status(name, manager, description, state, now, self.estimate,
                                             lambda b: f"/api/v1/builds/{b}/console", lambda b: f"/build/{b}",
                                             starts))
        doc = status_document(pipelines, sources.event_queue_depths(self.zk), now)
        return self.insight.annotate(doc) if self.insight is not None else doc

    def snapshot(self) -> GateSnapshot:
        return GateSnapshot(
            status=self.status(), nodes=sources.nodes(self.zk), requests=sources.node_requests(self.zk),
            event_queues=sources.event_queue_depths(self.zk),
            job_totals=self.history.job_totals() if self.history is not None else [],
        )

    def build(self, build_id: str) -> dict[str, Any] | None:
        """A build from the history, or a queued or running one from the status; with its log files."""
        doc: dict[str, Any] | None = None
        if self.history is not None:
            row = self.history.build(build_id)
            if row is not None:
                doc = {**row.to_dict(), "state": "completed"}
        if doc is None:
            doc = self._live_build(build_id)
        if doc is None:
            return None
        doc["logs"] = self.logs.files(doc.get("log_url") or "")
        doc["console_url"] = f"/api/v1/builds/{build_id}/console" if doc.get("state") == "running" else None
        return doc

    def _live_build(self, build_id: str) -> dict[str, Any] | None:
        for p in self.status()["pipelines"]:
            for q in p["queues"]:
                for item in q["items"]:
                    for job in item["jobs"]:
                        if job["build"] == build_id:
                            node = job["node"] or {}
                            return {
                                "uuid": build_id, "pipeline": p["name"], "project": item["change"]["project"],
                                "change": item["change"]["number"], "patchset": item["change"]["patchset"],
                                "changes": item["changes"], "job": job["name"], "state": job["state"],
                                "result": job["result"] or "", "message": job["message"],
                                "start_time": job["start_time"] or 0.0, "end_time": job["end_time"] or 0.0,
                                "log_url": job["log_url"] or "", "attempt": job["attempt"],
                                "node_name": node.get("name", ""), "node_label": node.get("label", ""),
                                "node_provider": node.get("provider", ""),
                            }
        return None


class _Handler(BaseHTTPRequestHandler):
    service: WebService
    server_version = f"gatekeeper/{gatekeeper.__version__}"

    # -- plumbing ----------------------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, data: Any) -> None:
        self._send(code, json.dumps(data, indent=1).encode(), "application/json")

    def _error(self, code: int, message: str) -> None:
        headers = {"WWW-Authenticate": 'Bearer realm="gatekeeper"'} if code == 401 else None
        self._send(code, json.dumps({"error": message}).encode(), "application/json", headers)

    def _query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

    # -- GET ---------------------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        path = unquote(urlsplit(self.path).path)
        try:
            self._route_get(path)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:
            log.exception("web: GET %s failed", path)
            self._error(500, f"internal error: {type(exc).__name__}")

    def _route_get(self, path: str) -> None:
        svc = self.service
        if path in PAGES:
            return self._static(PAGES[path])
        if path.startswith("/build/"):
            return self._static("build.html")
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        if path.startswith("/logs/"):
            return self._log_file(path[len("/logs/"):])
        if path == "/metrics":
            body = prometheus.render(gate_metrics(svc.snapshot()))
            return self._send(200, body.encode(), prometheus.CONTENT_TYPE)
        if path == "/api/v1/info":
            return self._json(200, {"version": gatekeeper.__version__, "status_schema": 1,
                                    "admin": bool(svc.admin_token), "history": svc.history is not None})
        if path == "/api/v1/status":
            return self._json(200, svc.status())
        m = re.fullmatch(r"/api/v1/status/change/([0-9,]+)", path)
        if m:
            items = find_item(svc.status(), m.group(1), self._query().get("pipeline"))
            if not items:
                return self._error(404, f"change {m.group(1)} is in no pipeline")
            return self._json(200, items)
        if path == "/api/v1/builds":
            return self._builds()
        m = re.fullmatch(r"/api/v1/builds/([\w.-]+)/console", path)
        if m:
            return self._console(m.group(1))
        m = re.fullmatch(r"/api/v1/builds/([\w.-]+)", path)
        if m:
            doc = svc.build(m.group(1))
            if doc is None:
                return self._error(404, f"no build {m.group(1)}")
            return self._json(200, doc)
        if path == "/api/v1/buildsets":
            return self._buildsets()
        if path == "/api/v1/nodes":
            return self._json(200, sources.nodes(svc.zk))
        if path == "/api/v1/requests":
            return self._json(200, sources.node_requests(svc.zk))
        if path == "/api/v1/images":
            return self._json(200, sources.images(svc.zk))
        if path == "/api/v1/holds":
            held = [n for n in sources.nodes(svc.zk) if n.get("state") == "hold" or n.get("hold_requested")]
            return self._json(200, {"nodes": held, "autoholds": sources.autoholds(svc.zk)})
        return self._error(404, f"no such page or endpoint: {path}")

    def _static(self, name: str) -> None:
        target = (STATIC / name).resolve()
        if STATIC.resolve() not in target.parents or not target.is_file():
            return self._error(404, f"no such file: {name}")
        types = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}
        self._send(200, target.read_bytes(), types.get(target.suffix, "application/octet-stream"))

    def _log_file(self, relative: str) -> None:
        target = self.service.logs.resolve(relative)
        if target is None:
            return self._error(404, f"no log file {relative}")
        if target.is_dir():
            if not self.path.split("?")[0].endswith("/"):
                return self._send(301, b"", "text/plain", {"Location": self.path.split("?")[0] + "/"})
            entries = sorted(target.iterdir())
            links = "".join(
                f'<li><a href="{quote(e.name)}{"/" if e.is_dir() else ""}">{html.escape(e.name)}</a></li>'
                for e in entries
            )
            title = html.escape(relative)
            page = f"<!doctype html><title>logs: {title}</title><h1>{title}</h1><ul>{links}</ul>"
            return self._send(200, page.encode(), "text/html; charset=utf-8")
        headers = self.service.logs.headers(target)
        content_type = headers.pop("Content-Type")
        self._send(200, target.read_bytes(), content_type, headers)

    def _int_arg(self, query: dict[str, str], name: str, default: int | None) -> int | None:
        if name not in query or query[name] == "":
            return default
        try:
            return int(query[name])
        except ValueError:
            raise AdminError(f'query parameter {name}="{query[name]}" is not a number') from None

    def _builds(self) -> None:
        svc = self.service
        if svc.history is None:
            return self._error(503, "no build history database is configured")
        q = self._query()
        try:
            change = self._int_arg(q, "change", None)
            limit = min(self._int_arg(q, "limit", 50) or 50, 1000)
            offset = self._int_arg(q, "offset", 0) or 0
        except AdminError as exc:
            return self._error(400, str(exc))
        final = {"true": True, "false": False}.get(q.get("final", "").lower())
        rows = svc.history.builds(project=q.get("project") or None, job=q.get("job") or None,
                                  result=q.get("result") or None, change=change,
                                  pipeline=q.get("pipeline") or None, final=final, limit=limit, offset=offset)
        self._json(200, [r.to_dict() for r in rows])

    def _buildsets(self) -> None:
        svc = self.service
        if svc.history is None:
            return self._error(503, "no build history database is configured")
        q = self._query()
        try:
            change = self._int_arg(q, "change", None)
            limit = min(self._int_arg(q, "limit", 50) or 50, 1000)
        except AdminError as exc:
            return self._error(400, str(exc))
        rows = svc.history.buildsets(project=q.get("project") or None, pipeline=q.get("pipeline") or None,
                                     change=change, result=q.get("result") or None, limit=limit)
        self._json(200, [r.to_dict() for r in rows])

    def _console(self, build_id: str) -> None:
        """Relay the executor's live console stream to the client, chunk by chunk, until either side ends."""
        for base in self.service.console_bases():
            try:
                upstream = urllib.request.urlopen(f"{base}/console/{build_id}", timeout=30)
            except urllib.error.HTTPError as exc:
                exc.close()
                continue  # not this executor's build
            except OSError as exc:
                log.warning("web: console of build %s: executor %s unreachable: %s", build_id, base, exc)
                continue
            with upstream:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("X-Accel-Buffering", "no")
                self.end_headers()
                while True:
                    chunk = upstream.read1(65536)
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    self.wfile.flush()
            self.close_connection = True
            return
        self._error(404, f"build {build_id} has no live console (finished builds keep theirs in their logs)")

    # -- POST (admin) --------------------------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        m = re.fullmatch(r"/api/v1/admin/([\w-]+)", path)
        if not m:
            return self._error(404, f"no such endpoint: POST {path}")
        action = m.group(1)
        who = self._who()
        try:
            check_token(self.headers.get("Authorization"), self.service.admin_token)
        except AdminError as exc:
            audit.warning("admin %s refused for %s: %s", action, who, exc)
            return self._error(exc.status, str(exc))
        body: dict[str, Any] = {}
        try:
            body = self._body()
            result = self.service.admin.run(action, body, who)
        except AdminError as exc:
            audit.info("admin %s by %s: %s failed: %s", action, who, describe_request(body), exc)
            return self._error(exc.status, str(exc))
        except Exception as exc:
            log.exception("web: admin %s failed", action)
            return self._error(500, f"internal error: {type(exc).__name__}")
        self._json(200, result)

    def _who(self) -> str:
        user = self.headers.get("X-Gatekeeper-User", "") or "anonymous"
        if not USER.match(user):
            user = "invalid-user-name"
        return f"{user} from {self.client_address[0]}"

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise AdminError(f"request body too large ({length} bytes; at most {MAX_BODY})", 413)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise AdminError("request body is not JSON") from None
        if not isinstance(body, dict):
            raise AdminError("request body must be a JSON object")
        return body


def from_config(config: Any, zk: ZKClient, **overrides: Any) -> WebService:
    """A WebService as the service config describes it (web, history, log-store and statsd sections)."""
    from gatekeeper.history.db import HistoryDB

    statsd = None
    if config.get("statsd", "host"):
        statsd = StatsdClient(config.get("statsd", "host"), int(config.get("statsd", "port", 8125)),
                              config.get("statsd", "prefix", "gatekeeper"))
    kwargs: dict[str, Any] = dict(
        host=config.get("web", "listen", "127.0.0.1"),
        port=int(config.get("web", "port", 9000)),
        admin_token=config.get("web", "admin-token"),
        history=HistoryDB(config.get("history", "url")) if config.get("history", "url") else None,
        log_dir=config.path("log-store", "dir") if config.get("log-store", "dir") else None,
        log_url=config.get("log-store", "url"),
        statsd=statsd,
    )
    kwargs.update(overrides)
    return WebService(zk, **kwargs)
