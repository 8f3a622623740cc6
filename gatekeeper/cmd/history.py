"""`gatekeeper history`: migrate the history database, or run the recorder that fills it."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from gatekeeper.cmd.signals import wait_until_set
from gatekeeper.config.settings import load_service_config

EXIT_USAGE = 2
EXIT_CONFIG = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("history", help="build history database: migrate it, or run its recorder")
    parser.add_argument("-c", "--config", metavar="FILE", help="service config (default: $GATEKEEPER_CONFIG or none)")
    parser.add_argument("--url", help="database URL (default: history.url from the config)")
    sub = parser.add_subparsers(dest="history_command", metavar="ACTION", required=True)
    migrate = sub.add_parser("migrate", help="create or upgrade the history tables to the newest schema")
    migrate.set_defaults(func=cmd_migrate)
    recorder = sub.add_parser("recorder", help="store finished builds from ZooKeeper in the database (a service)")
    recorder.set_defaults(func=cmd_recorder)


def _db(args: argparse.Namespace):
    """The history database; a URL SQLAlchemy cannot use is a HistoryError naming where it was set."""
    from sqlalchemy.exc import ArgumentError

    from gatekeeper.history.db import HistoryDB, HistoryError

    config = load_service_config(args.config)
    url = args.url or config.get("history", "url")
    try:
        return HistoryDB(url)
    except ArgumentError as exc:
        origin = "--url" if args.url else f"{config.source}: history.url"
        error = HistoryError(f'{origin}: "{url}" is not a database URL SQLAlchemy can use ({exc}); expected one '
                             "like sqlite:///path/history.sqlite or postgresql://user@host/db")
        error.exit_code = EXIT_USAGE if args.url else EXIT_CONFIG  # type: ignore[attr-defined]
        raise error from None


def cmd_migrate(args: argparse.Namespace) -> int:
    from gatekeeper.history.db import HistoryError

    try:
        db = _db(args)
    except HistoryError as exc:
        print(exc, file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    print(f"history database {db.safe_url} is at schema version {db.version}")
    db.close()
    return 0


def cmd_recorder(args: argparse.Namespace) -> int:
    from gatekeeper.history.db import HistoryError
    from gatekeeper.history.recorder import HistoryRecorder
    from gatekeeper.zk.client import ZKClient

    config = load_service_config(args.config)
    try:
        db = _db(args)
    except HistoryError as exc:
        print(exc, file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    zk = ZKClient(config.get("zookeeper", "hosts"), **config.zk_kwargs()).start()
    recorder = HistoryRecorder(zk, db).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        wait_until_set(done)
    except KeyboardInterrupt:
        pass
    finally:
        recorder.stop()
        zk.stop()
        db.close()
    return 0
