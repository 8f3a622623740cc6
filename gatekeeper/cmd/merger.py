"""`gatekeeper merger`: run a merger service until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Callable

from gatekeeper.cmd import args as types
from gatekeeper.cmd.signals import wait_until_set
from gatekeeper.config.settings import ServiceConfig, load_service_config
from gatekeeper.gitrepo import ssh_command

log = logging.getLogger("gatekeeper.merger.cli")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("merger", help="run a merger: speculative merges for the scheduler, from ZooKeeper")
    parser.add_argument("-c", "--config", metavar="FILE", help="service config (default: $GATEKEEPER_CONFIG or none)")
    parser.add_argument("--git-dir", help="repo cache directory (default: merger.git-dir from the config)")
    parser.add_argument("--workers", type=types.positive_int,
                        help="parallel merges (default: merger.workers from the config)")
    parser.set_defaults(func=run)


def gerrit_url_for_project(config: ServiceConfig) -> Callable[[str], str | None]:
    """project -> fetch URL from the `gerrit` section: `git-url` (with `{project}` or as a prefix), else SSH."""
    gerrit = config.section("gerrit")
    template = gerrit.get("git-url")

    def url(project: str) -> str | None:
        if template:
            return template.format(project=project) if "{project}" in template else f"{template.rstrip('/')}/{project}"
        if gerrit.get("host") and gerrit.get("user"):
            return f"ssh://{gerrit['user']}@{gerrit['host']}:{gerrit.get('port', 29418)}/{project}"
        return None

    return url


def run(args: argparse.Namespace) -> int:
    from gatekeeper.merger.service import MergerService
    from gatekeeper.zk.client import ZKClient

    config = load_service_config(args.config)
    git_dir = os.path.expanduser(args.git_dir) if args.git_dir else str(config.path("merger", "git-dir"))
    workers = args.workers or int(config.get("merger", "workers", 2))
    key = config.get("gerrit", "key")
    ssh = ssh_command(os.path.expanduser(key), os.path.join(git_dir, "known_hosts")) if key else None
    zk = ZKClient(config.get("zookeeper", "hosts"), **config.zk_kwargs()).start()
    service = MergerService(zk, git_dir, workers=workers, ssh=ssh, url_for_project=gerrit_url_for_project(config))
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    service.start()
    try:
        wait_until_set(done)
    finally:
        service.stop()
        zk.stop()
    return 0
