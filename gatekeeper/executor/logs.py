"""Bringing a build's logs home: copy-back from the node, renaming, masking, compression, index, log store.

Copy-back is one tar stream over the build's SSH connection (a wide channel window), unpacked here member by
member: each file is flattened into the build's log directory, `*.log` renamed `*.txt`, and secrets masked.
Files above a size are gzip-compressed once the logs are in the log store, on the store's own thread:
compression costs more CPU than the copy itself, and neither the build's result nor its node release waits for
it. The index is rewritten after.

The node's syslog (`syslog.txt`) is read from the first of these that exists on the node:
`~/syslog` (what the simulated nodes use: they run no syslog daemon, so the devstack stand-in appends
syslog-format lines there when `/dev/log` is missing), `/var/log/syslog` (Debian/Ubuntu rsyslog),
`/var/log/messages`, then the systemd journal (`journalctl`) when journald runs.
"""

from __future__ import annotations

import gzip
import html
import logging
import os
import re
import shlex
import shutil
import tarfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from gatekeeper.executor.masking import Masker
from gatekeeper.executor.remote import NodeLost, RemoteHost

log = logging.getLogger("gatekeeper.executor.logs")

COMPRESS_OVER = 1 << 20  # bytes: larger files are archived gzip-compressed
GZIP_LEVEL = 1  # logs shrink ~5-10x even at the fastest level; higher levels cost copy-back speed
SYSLOG_SCRIPT = (
    'if [ -f "$HOME/syslog" ]; then exec cat "$HOME/syslog"; '
    "elif [ -r /var/log/syslog ]; then exec cat /var/log/syslog; "
    "elif [ -r /var/log/messages ]; then exec cat /var/log/messages; "
    "elif [ -S /run/systemd/journal/socket ]; then exec journalctl --no-pager -o short-precise; "
    "else echo 'no syslog on this node'; fi"
)
SYSLOG_FILES = ("/var/log/syslog", "/var/log/messages")
_GLOB = re.compile(r"([*?\[\]])")


def shell_glob(pattern: str) -> str:
    """A shell word that expands `pattern` as a glob but runs nothing: literal parts quoted, `~/` as $HOME."""
    prefix = ""
    if pattern.startswith("~/"):
        prefix, pattern = '"$HOME"/', pattern[2:]
    parts = _GLOB.split(pattern)
    return prefix + "".join(p if _GLOB.fullmatch(p) else shlex.quote(p) for p in parts if p)


def collect_command(patterns: list[str]) -> str:
    """A remote command writing a tar of every existing regular file matching `patterns` to stdout."""
    words = " ".join(shell_glob(p) for p in patterns)
    return ("set --; for f in " + words + '; do [ -f "$f" ] && set -- "$@" "$f"; done; '
            '[ "$#" -gt 0 ] || exit 0; exec tar -cf - -- "$@" 2>/dev/null')


def archive_name(member: str, taken: set[str]) -> str:
    """Where a collected file lands: its base name, `.log` -> `.txt`, made unique with its parent dirs."""
    parts = [p for p in member.split("/") if p not in ("", ".", "..")]
    base = parts[-1] if parts else "file"
    if base.endswith(".log"):
        base = base[:-4] + ".txt"
    name, i = base, len(parts) - 2
    while name in taken and i >= 0:
        name = f"{parts[i]}-{name}"
        i -= 1
    n = 1
    while name in taken:
        n += 1
        name = f"{n}-{base}"
    taken.add(name)
    return name


@dataclass
class CollectedLogs:
    files: list[str] = field(default_factory=list)  # archive names, relative to the log dir
    bytes_in: int = 0  # as read from the node
    seconds: float = 0.0


def store_file(data: bytes, dest_dir: str, name: str, masker: Masker) -> str:
    """Write one log file, secrets masked; returns its archive name."""
    with open(os.path.join(dest_dir, name), "wb") as f:
        f.write(masker.data(data))
    return name


class ChannelReader:
    """A minimal binary reader over a paramiko channel (paramiko's own file object re-copies its buffer per packet,
    which costs more than the copy-back itself)."""

    def __init__(self, chan) -> None:
        self.chan = chan

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        got = 0
        while size < 0 or got < size:
            data = self.chan.recv(size - got if size >= 0 else 1 << 20)
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def close(self) -> None:
        pass


def collect_files(remote: RemoteHost, patterns: list[str], dest_dir: str, masker: Masker,
                  timeout: float = 600.0) -> CollectedLogs:
    """Copy every file matching `patterns` on the node into `dest_dir` (flattened, renamed, masked)."""
    out = CollectedLogs()
    start = time.monotonic()
    os.makedirs(dest_dir, exist_ok=True)
    taken = set(os.listdir(dest_dir))
    if not patterns:
        return out
    chan = remote.open_channel(collect_command(patterns), bulk=True)
    chan.settimeout(timeout)
    stream = ChannelReader(chan)
    # masking and writing overlap with receiving the next file
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="logs")
    pending: list[Future] = []
    try:
        try:
            with tarfile.open(fileobj=stream, mode="r|", bufsize=1 << 20) as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    f = tar.extractfile(member)
                    data = f.read() if f else b""
                    out.bytes_in += len(data)
                    name = archive_name(member.name, taken)
                    pending.append(pool.submit(store_file, data, dest_dir, name, masker))
                    del data
                    if len(pending) > 4:  # bound the memory held by files not yet written
                        pending[-5].result()
        except tarfile.ReadError as exc:
            if "empty file" not in str(exc):  # nothing matched: the command wrote nothing
                raise
        out.files = [f.result() for f in pending]
        status = chan.recv_exit_status()
    except (OSError, EOFError, tarfile.TarError) as exc:
        if not remote.alive():
            raise NodeLost(f"{remote.where}: the connection died during log copy-back") from None
        raise NodeLost(f"{remote.where}: log copy-back failed: {exc}") from None
    finally:
        pool.shutdown(wait=True)
        stream.close()
        chan.close()
    if status not in (0, -1):
        log.warning("%s: log collection exited with %s", remote.where, status)
    out.seconds = time.monotonic() - start
    return out


def compress_large(log_dir: str, over: int = COMPRESS_OVER) -> list[str]:
    """gzip every file larger than `over` bytes (`x.txt` -> `x.txt.gz`, atomically); returns the new names."""
    done = []
    for name in sorted(os.listdir(log_dir)):
        path = os.path.join(log_dir, name)
        if name.endswith(".gz") or name == "index.html" or not os.path.isfile(path) or os.path.getsize(path) <= over:
            continue
        with open(path, "rb") as f:
            data = f.read()
        tmp = path + ".gz.tmp"
        with open(tmp, "wb") as f:
            f.write(gzip.compress(data, GZIP_LEVEL, mtime=0))
        os.replace(tmp, path + ".gz")
        os.unlink(path)
        done.append(name + ".gz")
    return done


def collect_syslog(remote: RemoteHost, dest_dir: str, masker: Masker) -> str:
    """The node's syslog as `syslog.txt` (see the module docstring for where it is read from)."""
    _, data = remote.execute(SYSLOG_SCRIPT, timeout=120)
    return store_file(data, dest_dir, "syslog.txt", masker)


def write_index(log_dir: str, title: str) -> str:
    """An index.html listing every file of the log directory with its size."""
    rows = []
    for name in sorted(os.listdir(log_dir)):
        if name == "index.html":
            continue
        size = os.path.getsize(os.path.join(log_dir, name))
        link = html.escape(name, quote=True)
        rows.append(f'<tr><td><a href="{link}">{html.escape(name)}</a></td><td align="right">{size}</td></tr>')
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html.escape(title) + "</title></head>\n"
        "<body><h1>" + html.escape(title) + "</h1>\n<table>\n<tr><th>file</th><th>bytes</th></tr>\n"
        + "\n".join(rows) + "\n</table></body></html>\n"
    )
    path = os.path.join(log_dir, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def _component(value: object) -> str:
    text = _SAFE.sub("_", str(value)).strip("._") or "_"
    return text[:100]


class LogStore:
    """A directory served at a public URL; each build's logs go under change/patchset/pipeline/job/build."""

    def __init__(self, root: str, url: str, compress_over: int = COMPRESS_OVER) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.url = url.rstrip("/")
        self.compress_over = compress_over
        os.makedirs(self.root, exist_ok=True)
        self._compressor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-compress")
        self._pending: list[Future] = []

    @staticmethod
    def build_path(change: int | str | None, patchset: int | str | None, pipeline: str, job: str,
                   build_id: str) -> str:
        """`34/1234/2/gate/devstack/5f3c0a1` (the last two digits of the change first, as Gerrit shards)."""
        if change:
            head = f"{int(change) % 100:02d}/{_component(change)}/{_component(patchset or 0)}"
        else:
            head = "periodic"
        return f"{head}/{_component(pipeline)}/{_component(job)}/{_component(build_id)[:12]}"

    def archive(self, log_dir: str, relpath: str) -> str:
        """Move a finished log directory into the store; returns its URL."""
        dest = os.path.join(self.root, relpath)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.move(log_dir, dest)
        os.chmod(dest, 0o755)
        return f"{self.url}/{relpath}/"

    def local_path(self, relpath: str) -> str:
        return os.path.join(self.root, relpath)

    def compress_later(self, relpath: str, title: str) -> Future:
        """Compress the large files of an archived build on the store's thread, then rewrite its index."""
        def work() -> None:
            path = self.local_path(relpath)
            try:
                if compress_large(path, self.compress_over):
                    write_index(path, title)
            except OSError as exc:
                log.error("compressing the logs in %s failed: %s", path, exc)

        future = self._compressor.submit(work)
        self._pending = [f for f in self._pending if not f.done()] + [future]
        return future

    def flush(self) -> None:
        """Wait for every compression started so far."""
        for future in list(self._pending):
            future.result()

    def close(self) -> None:
        self._compressor.shutdown(wait=True)
