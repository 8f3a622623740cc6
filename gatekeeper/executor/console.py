"""The console of a build: timestamped, masked lines in a file, and a live HTTP stream of it.

`GET /console/<build-id>` on a ConsoleServer streams the console from its first line and keeps the response open,
sending each new line as it is written, until the build ends. The web service can relay that stream as is.
"""

from __future__ import annotations

import collections
import datetime
import gzip
import logging
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gatekeeper.executor.masking import Masker

log = logging.getLogger("gatekeeper.executor.console")


def timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class Console:
    """One build's console file; writers append lines, followers wait for more."""

    def __init__(self, build_id: str, path: str, masker: Masker | None = None) -> None:
        self.build_id = build_id
        self.path = path
        self.masker = masker or Masker()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._file = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 (closed by close())
        self._cond = threading.Condition()
        self.closed = False

    def line(self, text: str) -> None:
        """Append one or more lines, each with a UTC timestamp, secrets masked."""
        text = self.masker.text(text.rstrip("\n"))
        stamp = timestamp()
        with self._cond:
            if self.closed:
                return
            for part in text.split("\n"):
                self._file.write(f"{stamp} | {part}\n")
            self._file.flush()
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            if not self.closed:
                self.closed = True
                self._file.close()
            self._cond.notify_all()

    def follow(self, poll: float = 1.0) -> Iterator[bytes]:
        """The console from its start, then each new chunk as it is written, until the console is closed."""
        # a large console is compressed in the log store once the build ended
        opener = open if os.path.exists(self.path) or not os.path.exists(self.path + ".gz") else gzip.open
        with opener(self.path if opener is open else self.path + ".gz", "rb") as f:
            while True:
                chunk = f.read(65536)
                if chunk:
                    yield chunk
                    continue
                with self._cond:
                    if self.closed:
                        rest = f.read()
                        if rest:
                            yield rest
                        return
                    self._cond.wait(poll)


class ConsoleRegistry:
    """Consoles of running builds, and of the last few finished ones (so a late follower still gets the end)."""

    def __init__(self, keep_finished: int = 50) -> None:
        self._live: dict[str, Console] = {}
        self._finished: collections.OrderedDict[str, Console] = collections.OrderedDict()
        self._keep = keep_finished
        self._lock = threading.Lock()

    def add(self, console: Console) -> None:
        with self._lock:
            self._live[console.build_id] = console

    def finish(self, build_id: str) -> None:
        with self._lock:
            console = self._live.pop(build_id, None)
            if console is None:
                return
            self._finished[build_id] = console
            while len(self._finished) > self._keep:
                self._finished.popitem(last=False)

    def get(self, build_id: str) -> Console | None:
        with self._lock:
            return self._live.get(build_id) or self._finished.get(build_id)

    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._live)


class _Handler(BaseHTTPRequestHandler):
    server: _ConsoleHTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 2 or parts[0] != "console":
            self._plain(404, "not found: try /console/<build-id>\n")
            return
        console = self.server.registry.get(parts[1])
        if console is None or not (os.path.exists(console.path) or os.path.exists(console.path + ".gz")):
            self._plain(404, f"no console for build {parts[1]} on this executor\n")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        try:
            for chunk in console.follow():
                if self.server.stopping.is_set():
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def _plain(self, code: int, text: str) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("console http: " + format, *args)


class _ConsoleHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: ConsoleRegistry) -> None:
        self.registry = registry
        self.stopping = threading.Event()
        super().__init__(address, _Handler)


class ConsoleServer:
    """A small threaded HTTP server for live consoles; `url(build_id)` is what goes into the status page."""

    def __init__(self, registry: ConsoleRegistry, host: str = "127.0.0.1", port: int = 0) -> None:
        self.registry = registry
        self._httpd = _ConsoleHTTPServer((host, port), registry)
        self.host, self.port = self._httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    def start(self) -> ConsoleServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="console-http", daemon=True)
        self._thread.start()
        return self

    @property
    def base_url(self) -> str:
        """What executors advertise in their registration (`extra["console"]`): `<base>/console/<build-id>`."""
        host = socket.getfqdn() if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def url(self, build_id: str) -> str:
        return f"{self.base_url}/console/{build_id}"

    def stop(self) -> None:
        self._httpd.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(5)
