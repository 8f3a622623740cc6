"""Operator commands for the Gerrit connection: `gatekeeper gerrit-query`, `gatekeeper gerrit-events`."""

from __future__ import annotations

import argparse
import json
import queue
import sys

from gatekeeper.cmd import args as types


def register(subparsers: argparse._SubParsersAction) -> None:
    from gatekeeper.cmd import add_config_args

    q = subparsers.add_parser("gerrit-query", help="run a Gerrit query through the configured connection")
    add_config_args(q)
    q.add_argument("query", nargs="+", help="Gerrit query words, e.g. status:open project:org/x")
    q.add_argument("--current-patch-set", action="store_true", help="include the current patch set")
    q.set_defaults(func=run_query)

    e = subparsers.add_parser("gerrit-events", help="print the configured Gerrit's events as gatekeeper parses "
                                                    "them (read-only: nothing is enqueued)")
    add_config_args(e)
    e.add_argument("--count", type=types.count, default=0, help="stop after this many events (default: run until ^C)")
    e.set_defaults(func=run_events)


def _connection(args: argparse.Namespace):  # -> GerritConnection
    from gatekeeper.config.settings import load_service_config
    from gatekeeper.gerrit.connection import GerritConnection

    section = load_service_config(args.config).section("gerrit")
    if not section.get("host"):
        print(f"{args.config or 'the service config'}: no gerrit section with a host", file=sys.stderr)
        return None
    return GerritConnection.from_section(section)


def run_query(args: argparse.Namespace) -> int:
    from gatekeeper.gerrit.client import GerritError

    conn = _connection(args)
    if conn is None:
        return 3
    try:
        flags = ["--current-patch-set"] if args.current_patch_set else []
        for row in conn.query(" ".join(args.query), *flags):
            print(json.dumps(row))
    except GerritError as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        conn.stop()
    return 0


def run_events(args: argparse.Namespace) -> int:
    from gatekeeper.gerrit.events import parse_event
    from gatekeeper.gerrit.watcher import StreamWatcher

    conn = _connection(args)
    if conn is None:
        return 3
    lines: queue.Queue = queue.Queue()
    watcher = StreamWatcher(conn.hostname, conn.port, conn.username, conn.keyfile,
                            on_line=lambda line, at: lines.put(line), name=conn.name)
    watcher.start()
    seen = 0
    try:
        while not args.count or seen < args.count:
            event = parse_event(lines.get())
            if event is not None:
                seen += 1
                print(f"{event.type} {event.project or ''} {event.change_key or event.ref_name or ''} "
                      f"{event.author or ''}".rstrip(), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()
        conn.stop()
    return 0
