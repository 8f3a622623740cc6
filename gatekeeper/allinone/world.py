"""The embedded defaults: everything gatekeeper talks to, on this machine, when nothing else is configured.

`EmbeddedWorld.start()` brings up a local ZooKeeper, the Gerrit simulator holding the eight reference projects
(with the devstack and nova stand-ins), and the cloud simulator as two providers whose servers are SSH hosts;
then it writes a real `gatekeeper.yaml` and `clouds.yaml` pointing at them.  The all-in-one service reads only
that config, so pointing it at a real Gerrit, ZooKeeper and clouds instead needs no code change.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gatekeeper.sim.reference_projects import REFERENCE_PROJECTS, seed_project
from gatekeeper.zk.server import LocalZooKeeper, free_port

log = logging.getLogger("gatekeeper.allinone.world")

CLOUDS = ("cloud-a", "cloud-b")
# What the reference layout's providers name: base images and flavors the simulated clouds must offer.
SIM_IMAGES = ("ubuntu-22.04", "ubuntu-24.04")
SIM_FLAVORS = (("1", "m1.small", 1, 2048), ("2", "m1.medium", 2, 4096), ("3", "m1.large", 4, 8192))
CI_ACCOUNT = "gatekeeper"
PEOPLE = (("jane", "Jane Developer"), ("rita", "Rita Core"))


@dataclass
class EmbeddedWorld:
    """Local stand-ins for ZooKeeper, Gerrit and two clouds, under `workdir`; `stop()` ends every one."""

    workdir: Path
    layout_dir: Path
    web_port: int = 9000
    zookeeper: LocalZooKeeper | None = None
    gerrit: object | None = None  # GerritSimulator
    clouds: object | None = None  # CloudSim
    config_path: Path | None = None
    ci_key: str = ""
    parts: list[str] = field(default_factory=list)

    def start(self) -> EmbeddedWorld:
        from gatekeeper.sim.gerrit import GerritSimulator

        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            # a one-machine demo: its writes need not wait for the disk (they are still written; a crash of the
            # machine, not of the demo, could lose the last ones)
            self.zookeeper = LocalZooKeeper(data_dir=str(self.workdir / "zookeeper"), force_sync=False).start()
            self.parts.append(f"ZooKeeper {self.zookeeper.hosts}")
            self.gerrit = GerritSimulator(str(self.workdir / "gerrit"), port=free_port()).start()
            ci = self.gerrit.add_account(CI_ACCOUNT, name="gatekeeper CI", email="ci@gatekeeper.invalid",
                                         key_dir=str(self.workdir / "keys"))
            self.ci_key = ci.key_file
            for username, name in PEOPLE:
                self.gerrit.add_account(username, name=name, email=f"{username}@example.org")
            for project in REFERENCE_PROJECTS:
                created = self.gerrit.create_project(project)
                seed_project(project, created.repo.path)
            count = len(REFERENCE_PROJECTS)
            self.parts.append(f"Gerrit simulator ssh://127.0.0.1:{self.gerrit.port} ({count} projects)")
            self.clouds = self._start_clouds()
            self.parts.append(f"cloud simulator: {', '.join(CLOUDS)} ({self.clouds.backend_name})")
            self.config_path = self.write_config()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_clouds(self):
        from gatekeeper.sim.openstack.sim import CloudSim

        return CloudSim(list(CLOUDS), workdir=str(self.workdir / "clouds"), images=list(SIM_IMAGES),
                        flavors=[dict(id=i, name=n, vcpus=c, ram=r) for i, n, c, r in SIM_FLAVORS])

    def write_config(self) -> Path:
        """A real service config for these stand-ins (and a node key for the launcher)."""
        node_key = self.workdir / "keys" / "node_key"
        if not node_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gatekeeper-nodes", "-f",
                            str(node_key)], check=True)
        config = {
            "zookeeper": {"hosts": self.zookeeper.hosts, "chroot": "/gatekeeper"},
            "gerrit": {"name": "gerrit", "host": "127.0.0.1", "port": self.gerrit.port, "user": CI_ACCOUNT,
                       "key": self.ci_key, "url": self.gerrit.web_url},
            "layout": str(self.layout_dir),
            "merger": {"git-dir": str(self.workdir / "merger"), "workers": 2},
            "executor": {"work-dir": str(self.workdir / "executor"), "concurrency": 4, "hold-hours": 24,
                         "max-held": 10},
            "launcher": {"clouds-yaml": self.clouds.clouds_yaml, "cleanup-interval": 300,
                         "ssh-key": str(node_key)},
            "log-store": {"dir": str(self.workdir / "logs"), "url": f"http://127.0.0.1:{self.web_port}/logs"},
            "web": {"listen": "127.0.0.1", "port": self.web_port},
            "history": {"url": f"sqlite:///{self.workdir / 'history.sqlite'}"},
        }
        path = self.workdir / "gatekeeper.yaml"
        path.write_text("# Written by `gatekeeper all-in-one` for its embedded stand-ins.\n"
                        + yaml.safe_dump(config, sort_keys=False))
        os.chmod(path, 0o600)
        return path

    def stop(self) -> None:
        for name, part in (("clouds", self.clouds), ("gerrit", self.gerrit), ("zookeeper", self.zookeeper)):
            if part is None:
                continue
            try:
                part.stop()
            except Exception:
                log.exception("stopping the embedded %s", name)
        self.clouds = self.gerrit = None
        if self.zookeeper is not None:
            self.zookeeper.cleanup()
            self.zookeeper = None
