"""`gatekeeper executor`: run an executor service until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Callable

from gatekeeper.config.service import ServiceConfig, load_service_config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("executor", help="run an executor: build requests from ZooKeeper, jobs on nodes over SSH")
    parser.add_argument("-c", "--config", metavar="FILE", help="service config (default: $GATEKEEPER_CONFIG or none)")
    parser.add_argument("--concurrency", type=int, help="builds at once (default: executor.concurrency)")
    parser.add_argument("--console-host", default="127.0.0.1", help="address of the live console HTTP server")
    parser.add_argument("--console-port", type=int, default=0, help="its port (default: any free port)")
    parser.add_argument("--transfer", choices=("tar", "rsync"), default="tar",
                        help="how the workspace is copied to the node (default: tar over the build's SSH connection)")
    parser.set_defaults(func=run)


def url_for_project(config: ServiceConfig) -> Callable[[str], str]:
    """project -> Gerrit fetch URL, from the `gerrit` section: `git-url` (with `{project}` or a prefix), else SSH."""
    gerrit = config.section("gerrit")
    template = gerrit.get("git-url")

    def url(project: str) -> str:
        if template:
            return template.format(project=project) if "{project}" in template else f"{template.rstrip('/')}/{project}"
        return f"ssh://{gerrit.get('user', 'gatekeeper')}@{gerrit.get('host', '127.0.0.1')}:" \
               f"{gerrit.get('port', 29418)}/{project}"

    return url


def run(args: argparse.Namespace) -> int:
    from gatekeeper.executor.build import ExecutorSettings
    from gatekeeper.executor.logs import LogStore
    from gatekeeper.executor.service import ExecutorService
    from gatekeeper.gitrepo import ssh_command
    from gatekeeper.zk.client import ZKClient

    config = load_service_config(args.config)
    work_dir = str(config.path("executor", "work-dir"))
    os.makedirs(work_dir, exist_ok=True)
    settings = ExecutorSettings(
        work_dir=work_dir,
        hold_hours=float(config.get("executor", "hold-hours", 24)),
        max_held=int(config.get("executor", "max-held", 10)),
        transfer=args.transfer,
    )
    key = config.get("gerrit", "key")
    ssh = ssh_command(os.path.expanduser(key), os.path.join(work_dir, "known_hosts")) if key else None
    store = LogStore(str(config.path("log-store", "dir")), config.get("log-store", "url"))
    zk = ZKClient(config.get("zookeeper", "hosts"), **config.zk_kwargs()).start()
    service = ExecutorService(zk, settings, store, url_for_project(config), ssh=ssh,
                              concurrency=args.concurrency or int(config.get("executor", "concurrency", 4)),
                              console_host=args.console_host, console_port=args.console_port)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    service.start()
    print(f"executor {service.name}: live consoles at {service.console_server.url('<build-id>')}", flush=True)
    try:
        done.wait()
    finally:
        service.stop()
        zk.stop()
    return 0
