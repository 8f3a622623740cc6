"""The archived logs in the log store: map a build's log URL to files, list them, and serve them safely.

Executors write a build's logs under the log-store `dir` and publish `<url>/<path>/` as the build's log URL; the
web serves that folder at `/logs/` (the default log-store URL points there), so log links work with no other
server.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

MAX_LISTED = 500
# A build's logs are written by the job, so by whoever wrote the change: an .html or .svg log must not run script
# in the web's origin (where the admin API's token lives in the operator's browser). Every log answer is a
# sandboxed document that may load nothing and run nothing (styles written inline still show), and is never
# sniffed into another type.
LOG_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
               "X-Content-Type-Options": "nosniff"}


class LogPathError(ValueError):
    """A log path no file can have (a NUL byte, a control character): the client's mistake, not a missing file."""


class LogStore:
    def __init__(self, root: Path | None, url: str | None) -> None:
        self.root = Path(os.path.expanduser(str(root))).resolve() if root else None
        self.url = (url or "").rstrip("/")

    def resolve(self, relative: str) -> Path | None:
        """The file or folder at `relative` inside the store, or None if outside it or absent."""
        if any(ord(c) < 32 for c in relative):
            raise LogPathError(f"log path {relative[:200]!r} contains a control character or NUL byte")
        if self.root is None:
            return None
        try:
            # an absolute path is taken inside the store; ../ escapes and links out of it are refused below
            target = (self.root / relative.lstrip("/")).resolve()
            if target != self.root and self.root not in target.parents:
                return None
            return target if target.exists() else None
        except OSError:  # a name too long for the file system, a loop of links: no such file
            return None

    def relative_of(self, log_url: str) -> str | None:
        """The store-relative path of a log URL this store published, else None (another server's URL)."""
        if not self.url or not log_url.startswith(self.url + "/"):
            return None
        return log_url[len(self.url) + 1:].rstrip("/")

    def files(self, log_url: str) -> list[dict[str, Any]]:
        """The files under a build's log URL: name (relative), url, size; empty when not in this store."""
        rel = self.relative_of(log_url)
        folder = self.resolve(rel) if rel is not None else None
        if folder is None or not folder.is_dir():
            return []
        out = []
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.relative_to(folder).as_posix()
                out.append({"name": name, "url": f"{log_url.rstrip('/')}/{quote(name)}", "size": path.stat().st_size})
                if len(out) >= MAX_LISTED:
                    break
        return out

    @classmethod
    def headers(cls, path: Path) -> dict[str, str]:
        """Content-Type (and Content-Encoding for `x.txt.gz`, so browsers show compressed logs inline), and
        LOG_HEADERS."""
        if path.suffix == ".gz" and cls.content_type(path.with_suffix("")).startswith("text/"):
            return {"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "gzip", **LOG_HEADERS}
        return {"Content-Type": cls.content_type(path), **LOG_HEADERS}

    @staticmethod
    def content_type(path: Path) -> str:
        if path.suffix in (".log", ".txt", ".out", ".conf", ".yaml", ".yml", ".json", ".sh", ".ini", "") or \
                path.name.endswith(".log.txt"):
            return "text/plain; charset=utf-8"
        return mimetypes.guess_type(path.name)[0] or "application/octet-stream"
