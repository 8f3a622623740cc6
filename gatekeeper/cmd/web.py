"""`gatekeeper web`: run the status pages, the JSON API, /metrics and the admin API."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from gatekeeper.cmd import args as types
from gatekeeper.cmd.signals import wait_until_set


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("web", help="run the web service: status pages, JSON API, /metrics, admin API")
    parser.add_argument("-c", "--config", metavar="FILE", help="service config (default: $GATEKEEPER_CONFIG or none)")
    parser.add_argument("--port", type=types.port, help="listen on this port (default: web.port from the config)")
    parser.add_argument("--record-history", action="store_true",
                        help="also run the history recorder in this process (one is elected among all)")
    parser.set_defaults(func=cmd_web)


def cmd_web(args: argparse.Namespace) -> int:
    from gatekeeper.config.settings import load_service_config
    from gatekeeper.history.db import HistoryError
    from gatekeeper.zk.client import ZKClient, through_outages
    from gatekeeper.zk.components import Component

    config = load_service_config(args.config)
    zk = ZKClient(config.get("zookeeper", "hosts"), **config.zk_kwargs()).start()
    overrides = {"port": args.port} if args.port is not None else {}
    try:
        web = from_config(config, zk, **overrides)
    except HistoryError as exc:
        print(exc, file=sys.stderr)
        zk.stop()
        return 1
    recorder = None
    if args.record_history and web.history is not None:
        from gatekeeper.history.recorder import HistoryRecorder

        recorder = through_outages(HistoryRecorder, zk, web.history).start()
    try:
        web.start()
    except OSError as exc:
        print(f"web: cannot listen on {web.host}:{web.requested_port}: {exc.strerror}", file=sys.stderr)
        zk.stop()
        return 1
    component = Component(zk, "web", extra={"url": web.url})
    component.register()
    print(f"gatekeeper web on {web.url}/", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        wait_until_set(done)
    except KeyboardInterrupt:
        pass
    finally:
        component.unregister()
        web.stop()
        if recorder is not None:
            recorder.stop()
        if web.history is not None:
            web.history.close()
        zk.stop()
    return 0


def from_config(config: Any, zk: Any, **overrides: Any) -> Any:
    """A WebService as the service config describes it (web, history, log-store and statsd sections).

    Here, in the service's composition root, because it wires the history database into the web."""
    from gatekeeper.history.db import HistoryDB
    from gatekeeper.metrics.statsd import StatsdClient
    from gatekeeper.web.server import WebService

    statsd = None
    if config.get("statsd", "host"):
        statsd = StatsdClient(config.get("statsd", "host"), int(config.get("statsd", "port", 8125)),
                              config.get("statsd", "prefix", "gatekeeper"))
    kwargs: dict[str, Any] = dict(
        host=config.get("web", "listen", "127.0.0.1"),
        port=int(config.get("web", "port", 9000)),
        admin_token=config.get("web", "admin-token"),
        user_tokens=config.get("web", "user-tokens") or {},
        hold_access=config.section("hold-access"),
        history=HistoryDB(config.get("history", "url")) if config.get("history", "url") else None,
        log_dir=config.path("log-store", "dir") if config.get("log-store", "dir") else None,
        log_url=config.get("log-store", "url"),
        statsd=statsd,
    )
    kwargs.update(overrides)
    return WebService(zk, **kwargs)
