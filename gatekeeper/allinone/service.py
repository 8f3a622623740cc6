"""Every gatekeeper service in one process, from one service config: the single-machine deployment.

The services are the same classes the distributed deployment runs, each with its own ZooKeeper session, talking
only through ZooKeeper on the same paths; this module only builds them from the config and stops them in order.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.config.layout import Layout, load_layout
from gatekeeper.config.settings import ServiceConfig
from gatekeeper.config.store import publish_layout
from gatekeeper.zk.client import ZKClient

log = logging.getLogger("gatekeeper.allinone")


@dataclass
class AllInOne:
    """`start()` brings up Gerrit connection, scheduler, merger, launcher, executor, web and history recorder."""

    config: ServiceConfig
    layout: Layout | None = None
    services: list[tuple[str, Any]] = field(default_factory=list)
    clients: list[ZKClient] = field(default_factory=list)
    web: Any = None
    connection: Any = None

    def _zk(self) -> ZKClient:
        client = ZKClient(self.config.get("zookeeper", "hosts"), **self.config.zk_kwargs()).start()
        self.clients.append(client)
        return client

    def load_layout(self) -> Layout:
        return load_layout(self.config.layout_path, self.config.connections)

    def start(self) -> AllInOne:
        from gatekeeper.cmd.web import from_config
        from gatekeeper.executor.build import ExecutorSettings
        from gatekeeper.executor.logs import LogStore
        from gatekeeper.executor.service import ExecutorService
        from gatekeeper.gerrit.connection import GerritConnection
        from gatekeeper.gerrit.source import GerritChangeSource, GerritReporter
        from gatekeeper.gitrepo import ssh_command
        from gatekeeper.history.recorder import HistoryRecorder
        from gatekeeper.launcher.launcher import Launcher
        from gatekeeper.merger.service import MergerService
        from gatekeeper.scheduler.scheduler import Scheduler

        cfg = self.config
        self.layout = self.layout or self.load_layout()
        try:
            zk = self._zk()
            publish_layout(zk, self.layout)
            gerrit = cfg.section("gerrit")
            self.connection = GerritConnection.from_section(gerrit, zk)
            self.connection.start()
            self.services.append(("gerrit connection", self.connection))
            key = os.path.expanduser(gerrit["key"]) if gerrit.get("key") else None
            known_hosts = os.path.join(os.path.expanduser(str(cfg.path("merger", "git-dir"))), "known_hosts")
            os.makedirs(os.path.dirname(known_hosts), exist_ok=True)
            git_ssh = ssh_command(key, known_hosts)

            merger = MergerService(self._zk(), str(cfg.path("merger", "git-dir")),
                                   workers=int(cfg.get("merger", "workers", 2)), ssh=git_ssh,
                                   url_for_project=self.connection.git_url)
            self.services.append(("merger", merger.start()))

            launcher = Launcher(self._zk(), self.layout.nodepool, ssh_key=str(cfg.path("launcher", "ssh-key")),
                                clouds_yaml=str(cfg.path("launcher", "clouds-yaml")),
                                cleanup_interval=float(cfg.get("launcher", "cleanup-interval", 3600)))
            self.services.append(("launcher", launcher.start()))

            settings = ExecutorSettings(work_dir=str(cfg.path("executor", "work-dir")),
                                        hold_hours=float(cfg.get("executor", "hold-hours", 24)),
                                        max_held=int(cfg.get("executor", "max-held", 10)))
            store = LogStore(str(cfg.path("log-store", "dir")), cfg.get("log-store", "url"))
            executor = ExecutorService(self._zk(), settings, store, self.connection.git_url, ssh=git_ssh,
                                       concurrency=int(cfg.get("executor", "concurrency", 4)))
            self.services.append(("executor", executor.start()))

            scheduler_conn = GerritConnection.from_section(gerrit)  # its own SSH client for queries and reports
            self.services.append(("scheduler's gerrit client", scheduler_conn))
            scheduler = Scheduler(self._zk(), self.layout, GerritChangeSource(scheduler_conn),
                                  GerritReporter(scheduler_conn), connections=tuple(cfg.connections),
                                  layout_loader=self.load_layout, ignore_accounts=(gerrit["user"],))
            self.services.append(("scheduler", scheduler.start()))

            self.web = from_config(cfg, self._zk())
            self.services.append(("web", self.web.start()))
            if self.web.history is not None:
                recorder = HistoryRecorder(self._zk(), self.web.history)
                self.services.append(("history recorder", recorder.start()))
        except BaseException:
            self.stop()
            raise
        log.info("all-in-one up: %s", ", ".join(name for name, _ in self.services))
        return self

    def service(self, name: str) -> Any:
        return next(s for n, s in self.services if n == name)

    def stop(self) -> None:
        """Stop in reverse order of start: the scheduler before the workers, the connection last."""
        for name, service in reversed(self.services):
            try:
                service.stop()
            except Exception:
                log.exception("stopping %s", name)
        self.services.clear()
        for client in self.clients:
            try:
                client.stop()
            except Exception:
                pass
        self.clients.clear()
