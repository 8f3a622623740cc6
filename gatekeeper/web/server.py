"""The web service: status JSON and pages, build history, nodes and images, /metrics, logs, and the admin API,
served by uvicorn (routes in gatekeeper.web.app).

    web = WebService(zk, port=0, admin_token="...", history=HistoryDB(url), log_dir=..., log_url=...).start()
    web.port  # the bound port (0 asks the OS for a free one)
    web.stop()

Read-only endpoints are public; `POST /api/v1/admin/<action>` needs `Authorization: Bearer <admin-token>`.
The routes are listed in docs/status-api.md and in the OpenAPI document at /openapi.json.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h11
import uvicorn
from cachetools import TTLCache, cachedmethod
from cachetools.keys import methodkey
from uvicorn.protocols.http.h11_impl import H11Protocol

from gatekeeper.metrics import prometheus
from gatekeeper.metrics.gate import GateSnapshot, StatsdReporter, gate_metrics
from gatekeeper.metrics.statsd import StatsdClient
from gatekeeper.web import sources
from gatekeeper.web.admin import Admin
from gatekeeper.web.console import Upstream
from gatekeeper.web.logstore import LogStore
from gatekeeper.web.status import HistoryInsight, is_disabled, pipeline_status, started_builds, status_document
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.signatures import signature_totals

log = logging.getLogger("gatekeeper.web")

STATUS_TTL = 1.0  # seconds a status document is reused: many pollers, one ZooKeeper read
LAYOUT_TTL = 30.0
ESTIMATE_TTL = 60.0
ESTIMATES_KEPT = 4096  # (project, job) duration estimates cached at most
STARTUP_TIMEOUT = 30.0
SHUTDOWN_GRACE = 2.0  # seconds open responses get to finish when the web stops


class _HTTPProtocol(H11Protocol):
    """uvicorn's h11 protocol, answering a request that is not valid HTTP (a Content-Length of "abc" or -1) with
    what is wrong, as JSON like every other error, instead of a bare "Invalid HTTP request received."."""

    def send_400_response(self, msg: str) -> None:
        exc = sys.exc_info()[1]  # called from uvicorn's `except h11.RemoteProtocolError` block
        if isinstance(exc, h11.RemoteProtocolError) and str(exc):
            msg = f"the request is not valid HTTP: {exc}"
        body = json.dumps({"error": msg}).encode()
        headers = [(b"Content-Type", b"application/json"), (b"Connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


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
        body_timeout: float = 30.0,
        user_tokens: dict[str, str] | None = None,
        hold_access: dict[str, Any] | None = None,
    ) -> None:
        self.zk = zk
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.admin_token = admin_token or None
        self.user_tokens = dict(user_tokens or {})  # user name -> that developer's own token
        self.hold_access = dict(hold_access or {})  # enabled, max-hours
        self.history = history
        self.logs = LogStore(Path(log_dir) if log_dir else None, log_url)
        self.state_loader = state_loader or sources.StoreStateLoader()
        self.layout_loader = layout_loader or self._read_layout
        self.console_bases = console_bases or (lambda: sources.console_bases(self.zk))
        self.admin = Admin(zk, self.pipeline_names, management_timeout, layout=self.layout)
        # one rebuild at a time for the status (the others wait for it); the rest may be made twice in a race
        self._status_cache: TTLCache = TTLCache(1, STATUS_TTL, timer=time.monotonic)
        self._status_ready = threading.Condition()
        self._layout_cache: TTLCache = TTLCache(1, LAYOUT_TTL, timer=time.monotonic)
        self._estimates: TTLCache = TTLCache(ESTIMATES_KEPT, ESTIMATE_TTL, timer=time.monotonic)
        self._cache_lock = threading.Lock()
        self.body_timeout = body_timeout  # how long an admin request's body may take to arrive
        self.relays: set[Upstream] = set()  # open live-console relays, ended when the web stops
        self._server: uvicorn.Server | None = None
        self.insight = HistoryInsight(history) if history is not None else None
        self._thread: threading.Thread | None = None
        self._statsd = StatsdReporter(statsd, self.snapshot, statsd_interval) if statsd else None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> WebService:
        """Bind the port (an OSError here means it is taken), then serve in a thread of its own."""
        from gatekeeper.web.app import create_app

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.requested_port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        if self.logs.root is not None and not self.logs.url:
            self.logs.url = f"{self.url}/logs"  # no log-store URL given: this server is the log server
        config = uvicorn.Config(create_app(self), http=_HTTPProtocol, lifespan="off", log_config=None, access_log=False,
                                server_header=False, timeout_graceful_shutdown=SHUTDOWN_GRACE)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, args=(self._server, sock), name="web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:  # the socket already listens: this only surfaces a failed startup
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"web: the HTTP server on {self.url} did not start")
            time.sleep(0.01)
        if self._statsd:
            self._statsd.start()
        log.info("web: serving on http://%s:%s/ (admin API %s)", self.host, self.port,
                 "enabled" if self.admin_token else "disabled: no admin-token")
        return self

    @staticmethod
    def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()

    def stop(self) -> None:
        if self._statsd:
            self._statsd.stop()
        for relay in list(self.relays):
            relay.close_threadsafe()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None

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

    @cachedmethod(lambda self: self._layout_cache, lock=lambda self: self._cache_lock)
    def layout(self) -> Any:
        return self.layout_loader()

    def pipeline_names(self) -> list[str]:
        return [name for name, _, _ in sources.pipeline_names(self.zk, self.layout())]

    def estimate(self, project: str, job: str) -> float | None:
        if self.history is None:
            return None
        return self._estimate(project, job)

    @cachedmethod(lambda self: self._estimates, lock=lambda self: self._cache_lock)
    def _estimate(self, project: str, job: str) -> float | None:
        return self.history.estimate(project, job)

    def status(self) -> dict[str, Any]:
        return self._status()[0]

    def status_bytes(self) -> bytes:
        """The status document as JSON, serialised once per rebuild rather than once per poller."""
        return self._status()[1]

    def fresh_status_bytes(self) -> bytes | None:
        """The status JSON when the cached document is still fresh, else None (without building it)."""
        with self._status_ready:
            hit = self._status_cache.get(methodkey(self))
        return hit[1] if hit is not None else None

    @cachedmethod(lambda self: self._status_cache, condition=lambda self: self._status_ready)
    def _status(self) -> tuple[dict[str, Any], bytes]:
        now = time.time()
        pipelines = []
        starts = started_builds(self.zk)
        layout = self.layout()
        for name, manager, description in sources.pipeline_names(self.zk, layout):
            try:
                state = self.state_loader(self.zk, name)
            except Exception:
                log.exception("web: cannot read the state of pipeline %s", name)
                state = None
            pipelines.append(pipeline_status(name, manager, description, state, now, self.estimate,
                                             lambda b: f"/api/v1/builds/{b}/console", lambda b: f"/build/{b}",
                                             starts, is_disabled(state, layout, name)))
        doc = status_document(pipelines, sources.event_queue_depths(self.zk), now)
        doc["dead_letters"] = sources.dead_letter_counts(self.zk)
        doc["providers"] = sources.providers(self.zk)
        if self.insight is not None:
            doc = self.insight.annotate(doc)
        return doc, json.dumps(doc).encode()

    def snapshot(self) -> GateSnapshot:
        return GateSnapshot(
            status=self.status(), nodes=sources.nodes(self.zk), requests=sources.node_requests(self.zk),
            event_queues=sources.event_queue_depths(self.zk),
            job_totals=self.history.job_totals() if self.history is not None else [],
            signature_hits=signature_totals(self.zk, getattr(self.layout(), "signatures", None) or ()),
        )

    def metrics(self, accept: str = "") -> tuple[bytes, str]:
        """/metrics: the exposition in the format the scraper accepts (Prometheus text by default), its type."""
        return prometheus.exposition(gate_metrics(self.snapshot()), accept)

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
