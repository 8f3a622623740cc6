"""`gatekeeper zookeeper start|run|stop|status`: a local ZooKeeper for one machine (the demo, a developer)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from gatekeeper.cmd import args as types
from gatekeeper.cmd.signals import wait_for_process
from gatekeeper.zk.server import LocalZooKeeper, four_letter_word, pid_alive

DEFAULT_DIR = "~/.gatekeeper/zookeeper"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("zookeeper", help="run a local ZooKeeper from Debian's package")
    parser.add_argument("action", choices=("start", "run", "stop", "status"))
    parser.add_argument("--data-dir", default=DEFAULT_DIR, help=f"data dir (default {DEFAULT_DIR})")
    parser.add_argument("--port", type=types.port, default=2181, help="client port on 127.0.0.1 (default 2181)")
    parser.add_argument("--tls", action="store_true", help="also listen with TLS on port+100 (test PKI in data dir)")
    parser.set_defaults(func=run)


def _state(data_dir: Path) -> tuple[int | None, int | None]:
    """The PID and port a `start` left behind; a missing, unreadable or garbled file counts as none."""
    return _number_in(data_dir / "zookeeper.pid"), _number_in(data_dir / "zookeeper.port")


def _number_in(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _is_zookeeper(pid: int) -> bool:
    """Whether `pid` is alive and is a ZooKeeper server: a stale PID file may name a process reusing that PID."""
    if not pid_alive(pid):
        return False
    try:
        return b"ZooKeeperServerMain" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def run(args: argparse.Namespace) -> int:
    data_dir = Path(os.path.expanduser(args.data_dir)).resolve()
    pid, port = _state(data_dir)
    if pid and pid_alive(pid) and not _is_zookeeper(pid):
        print(f"{data_dir / 'zookeeper.pid'} names pid {pid}, which is not a ZooKeeper server (a stale PID file); "
              "leaving that process alone", file=sys.stderr)
        pid = None
    if args.action == "status":
        if pid and _is_zookeeper(pid) and port:
            try:
                version = (four_letter_word("127.0.0.1", port, "srvr").splitlines() or ["no answer to srvr"])[0]
            except OSError as exc:
                print(f"pid {pid} is alive but nothing answers on 127.0.0.1:{port} ({exc.strerror or exc})",
                      file=sys.stderr)
                return 1
            print(f"running: pid {pid}, 127.0.0.1:{port}, {version}")
            return 0
        print("not running")
        return 1
    if args.action == "stop":
        if not pid or not _is_zookeeper(pid):
            print("not running")
            return 0
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not pid_alive(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        (data_dir / "zookeeper.pid").unlink(missing_ok=True)
        print(f"stopped pid {pid}")
        return 0
    if pid and pid_alive(pid):
        print(f"already running: pid {pid}, 127.0.0.1:{port}", file=sys.stderr)
        return 0 if args.action == "start" else 1
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"cannot create the ZooKeeper data dir {data_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    tls = None
    if args.tls:
        from gatekeeper.zk.tls import make_pki

        tls = make_pki(data_dir / "pki")
    server = LocalZooKeeper(data_dir=str(data_dir), port=args.port, tls=tls,
                            secure_port=args.port + 100 if args.tls else None,
                            outlive_parent=args.action == "start")
    try:
        server.start()
    except RuntimeError as exc:  # not installed, exited at once (port taken, bad dir), or never answered
        print(exc, file=sys.stderr)
        server.stop()
        return 1
    (data_dir / "zookeeper.port").write_text(str(server.port))
    secure = f", TLS on {server.secure_hosts}" if tls else ""
    print(f"ZooKeeper running: 127.0.0.1:{server.port}{secure}, pid {server.process.pid}, data in {data_dir}")
    if args.action == "start":
        server.process = None  # leave it running as a daemon; `stop` ends it by PID
        return 0
    try:
        wait_for_process(server.process)
    except KeyboardInterrupt:
        server.stop()
    return 0
