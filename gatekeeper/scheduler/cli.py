"""`gatekeeper scheduler` (the service) and the operator requests `enqueue`, `dequeue`, `promote`, `reload`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
import uuid
from typing import Any

from kazoo.exceptions import NoNodeError
from kazoo.recipe.watchers import DataWatch

from gatekeeper.zk import paths
from gatekeeper.zk.client import OPERATOR_CONNECT_TIMEOUT, ZKClient
from gatekeeper.zk.event_queue import EventQueue
from gatekeeper.zk.record import decode

log = logging.getLogger("gatekeeper.scheduler.cli")


class ManagementTimeout(RuntimeError):
    pass


def send_management(zk: ZKClient, request: dict[str, Any], timeout: float = 30.0) -> str:
    """Write an operator request and wait for a scheduler's answer: "" when done, else the error for people."""
    request = {**request, "id": uuid.uuid4().hex, "created": time.time()}
    ident = EventQueue(zk, paths.management_queue()).put(request)
    answered = threading.Event()
    answer: dict[str, str] = {}
    path = paths.management_result(ident)

    def on_data(data: bytes | None, stat: Any) -> bool | None:
        if data is not None:
            answer.update(decode(data))
            answered.set()
            return False
        return None

    zk.client.ensure_path(paths.MANAGEMENT_RESULTS)
    DataWatch(zk.client, path, on_data)
    if not answered.wait(timeout):
        raise ManagementTimeout(f"no scheduler answered {request['action']} within {timeout:.0f}s "
                                "(is a scheduler running?)")
    try:
        zk.client.delete(path)
    except NoNodeError:
        pass
    return answer.get("error", "")


def _zk(args: argparse.Namespace) -> ZKClient:
    from gatekeeper.config.service import load_service_config

    config = load_service_config(args.config)
    return ZKClient(config.get("zookeeper", "hosts"), **config.zk_kwargs()).start(timeout=OPERATOR_CONNECT_TIMEOUT)


def _request(args: argparse.Namespace, request: dict[str, Any]) -> int:
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


def cmd_enqueue(args: argparse.Namespace) -> int:
    return _request(args, {"action": "enqueue", "pipeline": args.pipeline, "change": args.change})


def cmd_dequeue(args: argparse.Namespace) -> int:
    return _request(args, {"action": "dequeue", "pipeline": args.pipeline, "change": args.change})


def cmd_promote(args: argparse.Namespace) -> int:
    return _request(args, {"action": "promote", "pipeline": args.pipeline, "changes": args.changes})


def cmd_reload(args: argparse.Namespace) -> int:
    return _request(args, {"action": "reload"})


def cmd_scheduler(args: argparse.Namespace) -> int:
    from gatekeeper.config.layout import load_layout
    from gatekeeper.config.service import load_service_config
    from gatekeeper.gerrit.connection import GerritConnection
    from gatekeeper.scheduler.gerrit_source import GerritChangeSource, GerritReporter
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
        done.wait()
    except KeyboardInterrupt:
        pass
    scheduler.stop()
    conn.stop()
    listener.stop()
    zk.stop()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from gatekeeper.cli import add_config_args
    from gatekeeper.operator_cli import args as types

    p = sub.add_parser("scheduler", help="run the scheduler (pipelines, queues, reports)")
    add_config_args(p)
    p.add_argument("-l", "--layout", metavar="DIR", help="layout file or directory (default: from config)")
    p.set_defaults(func=cmd_scheduler)

    for name, func, helptext in (
        ("enqueue", cmd_enqueue, "put a change in a pipeline (as if it had been triggered)"),
        ("dequeue", cmd_dequeue, "take a change out of a pipeline"),
    ):
        p = sub.add_parser(name, help=helptext)
        add_config_args(p)
        p.add_argument("--pipeline", required=True)
        p.add_argument("--change", required=True, metavar="N,P", type=types.change_key,
                       help="change and patch set, e.g. 5,1")
        p.add_argument("--timeout", type=types.positive_number, default=30.0)
        p.set_defaults(func=func)

    p = sub.add_parser("promote", help="move changes to the head of their gate queue, in the order given")
    add_config_args(p)
    p.add_argument("--pipeline", required=True)
    p.add_argument("--changes", required=True, nargs="+", metavar="N,P", type=types.change_key)
    p.add_argument("--timeout", type=types.positive_number, default=30.0)
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("reload", help="read the layout again (a bad layout is refused; the running one stays)")
    add_config_args(p)
    p.add_argument("--timeout", type=types.positive_number, default=30.0)
    p.set_defaults(func=cmd_reload)
