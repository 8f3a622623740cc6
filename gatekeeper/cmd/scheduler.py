"""`gatekeeper scheduler` (the service), the operator requests `enqueue`, `dequeue`, `promote`, `reload`, and
`gatekeeper events list|replay|discard` for the events that kept failing (the dead letters)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from typing import Any

from gatekeeper.cmd.signals import wait_until_set
from gatekeeper.zk.client import OPERATOR_CONNECT_TIMEOUT, ZKClient
from gatekeeper.zk.deadletter import DeadLetters, FailedEvent
from gatekeeper.zk.management import Action, MalformedRequest, ManagementRequest, ManagementTimeout, send_management

log = logging.getLogger("gatekeeper.scheduler.cli")


def _zk(args: argparse.Namespace) -> ZKClient:
    from gatekeeper.config.settings import load_service_config

    config = load_service_config(args.config)
    return ZKClient(config.get("zookeeper", "hosts"), **config.zk_kwargs()).start(timeout=OPERATOR_CONNECT_TIMEOUT)


def _request(args: argparse.Namespace, request: ManagementRequest) -> int:
    try:
        request.check()  # what argparse cannot see, such as too many changes for one promote
    except MalformedRequest as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    zk = _zk(args)
    try:
        error = send_management(zk, request, args.timeout)
    except ManagementTimeout as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        zk.stop()
    if error:
        print(error, file=sys.stderr)
        return 1
    print("done")
    return 0


def _change_or_ref(action: Action, args: argparse.Namespace) -> ManagementRequest:
    """The request for `--change N,P`, or for `--project P --ref REF` (and its revisions)."""
    return ManagementRequest(action, pipeline=args.pipeline, change=args.change or "", project=args.project or "",
                             ref=args.ref or "", oldrev=getattr(args, "oldrev", None) or "", newrev=args.newrev or "")


def cmd_enqueue(args: argparse.Namespace) -> int:
    return _request(args, _change_or_ref(Action.ENQUEUE, args))


def cmd_dequeue(args: argparse.Namespace) -> int:
    return _request(args, _change_or_ref(Action.DEQUEUE, args))


def cmd_promote(args: argparse.Namespace) -> int:
    return _request(args, ManagementRequest(Action.PROMOTE, pipeline=args.pipeline, changes=args.changes))


def cmd_reload(args: argparse.Namespace) -> int:
    return _request(args, ManagementRequest(Action.RELOAD))


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch)) if epoch else "-"


def _letter_json(letter: FailedEvent) -> dict[str, Any]:
    return {"id": letter.ident, "queue": letter.queue, "about": letter.about, "error": letter.error,
            "attempts": letter.attempts, "first_failed_at": letter.first_failed_at, "failed_at": letter.failed_at,
            "event": letter.event}


def _letters(args: argparse.Namespace) -> tuple[ZKClient, DeadLetters]:
    """ZooKeeper and its dead letters; a bad config or an unreachable ZooKeeper goes to main()'s one sentence and
    exit code, as for every other command."""
    zk = _zk(args)
    return zk, DeadLetters(zk)


def cmd_events_list(args: argparse.Namespace) -> int:
    zk, letters = _letters(args)
    try:
        dead = letters.list()
        waiting = letters.retries()
        total = letters.total()
    finally:
        zk.stop()
    if args.json:
        print(json.dumps({"dead_letters": [_letter_json(x) for x in dead], "total": total,
                          "retrying": [_letter_json(x) for x in waiting]}, indent=2))
        return 0
    if not dead:
        print("no dead letters")
    for letter in dead:
        print(f"{letter.ident}  {letter.queue}  {letter.about or '-'}  {letter.attempts} attempt(s), "
              f"last failed {_when(letter.failed_at)}")
        print(f"    {letter.error}")
    if waiting:
        print(f"{len(waiting)} event(s) waiting to be tried again: "
              + ", ".join(f"{x.about or x.queue} at {_when(x.retry_at)}" for x in waiting))
    print(f"{total} event(s) became dead letters in all")
    return 0


def _each_letter(args: argparse.Namespace, act: str) -> int:
    zk, letters = _letters(args)
    code = 0
    try:
        idents = [x.ident for x in letters.list()] if args.all else args.ids
        for ident in idents:
            if act == "replay":
                new = letters.replay(ident)
                done = new is not None
                message = f"{ident}: back in its queue as {new}"
            else:
                done = letters.discard(ident)
                message = f"{ident}: discarded"
            if done:
                print(message)
            else:
                print(f"{ident}: no such dead letter (see `gatekeeper events list`)", file=sys.stderr)
                code = 4
    finally:
        zk.stop()
    return code


def cmd_events_replay(args: argparse.Namespace) -> int:
    return _each_letter(args, "replay")


def cmd_events_discard(args: argparse.Namespace) -> int:
    return _each_letter(args, "discard")


def cmd_scheduler(args: argparse.Namespace) -> int:
    from gatekeeper.config.layout import load_layout
    from gatekeeper.config.layout_contents import pipelines_missing
    from gatekeeper.config.settings import load_service_config
    from gatekeeper.gerrit.connection import GerritConnection
    from gatekeeper.gerrit.source import GerritChangeSource, GerritReporter
    from gatekeeper.scheduler.scheduler import Scheduler

    config = load_service_config(args.config)
    gerrit = config.section("gerrit")
    name = gerrit.get("name", "gerrit")
    if not gerrit.get("host") or not gerrit.get("user"):
        print(f"{config.source}: the scheduler needs a gerrit section with host and user (the Gerrit it gates)",
              file=sys.stderr)
        return 3

    def loader():
        return load_layout(args.layout or config.layout_path, config.connections)

    layout = loader()
    missing = pipelines_missing(layout)
    if missing is not None:  # as a reload to it is refused: a scheduler without pipelines would drop every change
        print(missing, file=sys.stderr)
        return 3
    zk = ZKClient(config.get("zookeeper", "hosts"), **config.zk_kwargs()).start()
    # The event listener (elected: one per connection however many schedulers run) writes Gerrit's events into
    # ZooKeeper; the scheduler's own client queries changes and reports.
    if gerrit.get("key"):
        gerrit = {**gerrit, "key": str(config.path("gerrit", "key"))}  # relative to the config file
    listener = GerritConnection.from_section(gerrit, zk)
    listener.start()
    conn = GerritConnection.from_section(gerrit)
    scheduler = Scheduler(zk, layout, GerritChangeSource(conn), GerritReporter(conn), connections=(name,),
                          layout_loader=loader, ignore_accounts=(gerrit["user"],)).start()
    done = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=scheduler.reload, daemon=True).start())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        wait_until_set(done)
    except KeyboardInterrupt:
        pass
    scheduler.stop()
    conn.stop()
    listener.stop()
    zk.stop()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from gatekeeper.cmd import add_config_args
    from gatekeeper.cmd import args as types

    p = sub.add_parser("scheduler", help="run the scheduler (pipelines, queues, reports)")
    add_config_args(p)
    p.add_argument("-l", "--layout", metavar="DIR", help="layout file or directory (default: from config)")
    p.set_defaults(func=cmd_scheduler)

    for name, func, helptext in (
        ("enqueue", cmd_enqueue, "put a change, or a ref's revision, in a pipeline (as if it had been triggered)"),
        ("dequeue", cmd_dequeue, "take a change, or a ref's items, out of a pipeline"),
    ):
        p = sub.add_parser(name, help=helptext)
        add_config_args(p)
        p.add_argument("--pipeline", required=True, type=types.pipeline_name)
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--change", metavar="N,P", type=types.change_key, help="change and patch set, e.g. 5,1")
        which.add_argument("--ref", metavar="REF",
                           help="a branch or tag of --project as a full ref, e.g. refs/heads/master, refs/tags/1.0")
        p.add_argument("--project", metavar="PROJECT", help="the ref's project (with --ref)")
        if name == "enqueue":
            p.add_argument("--oldrev", metavar="SHA", help="with --ref: the ref's revision before (default: none)")
            p.add_argument("--newrev", metavar="SHA",
                           help="with --ref: the revision to run on (default: a branch's tip in Gerrit)")
        else:
            p.add_argument("--newrev", metavar="SHA", help="with --ref: only the item of this revision "
                                                           "(default: every item of the ref)")
        p.add_argument("--timeout", type=types.wait_seconds, default=30.0)
        p.set_defaults(func=func)

    p = sub.add_parser("promote", help="move changes to the head of their gate queue, in the order given")
    add_config_args(p)
    p.add_argument("--pipeline", required=True, type=types.pipeline_name)
    p.add_argument("--changes", required=True, nargs="+", metavar="N,P", type=types.change_key)
    p.add_argument("--timeout", type=types.wait_seconds, default=30.0)
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("reload", help="read the layout again (a bad layout is refused; the running one stays)")
    add_config_args(p)
    p.add_argument("--timeout", type=types.wait_seconds, default=30.0)
    p.set_defaults(func=cmd_reload)

    events = sub.add_parser("events", help="events that kept failing (dead letters): list, replay or discard them")
    actions = events.add_subparsers(dest="events_action", metavar="ACTION", required=True)
    p = actions.add_parser("list", help="the dead letters with their errors, and events waiting for a retry")
    add_config_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_events_list)
    for name, func, helptext in (
        ("replay", cmd_events_replay, "put dead letters back into their queues (processed again, from scratch)"),
        ("discard", cmd_events_discard, "delete dead letters for good"),
    ):
        p = actions.add_parser(name, help=helptext)
        add_config_args(p)
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("ids", nargs="*", default=[], metavar="ID", help="dead letter ids, e.g. d-0000000003")
        which.add_argument("--all", action="store_true", help="every dead letter")
        p.set_defaults(func=func)
