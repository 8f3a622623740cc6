"""Several simulated clouds at once, sharing one host backend, with a clouds.yaml that names them all."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import yaml

from gatekeeper.sim.openstack.api import CloudServer
from gatekeeper.sim.openstack.cloud import Cloud, Flavor, Limits
from gatekeeper.sim.openstack.hosts import HostBackend, default_backend

log = logging.getLogger("gatekeeper.sim.openstack")


class CloudSim:
    """Start named clouds; `clouds_yaml` is the path of a clouds.yaml for them; `stop()` ends everything."""

    def __init__(self, names: list[str], *, backend: str = "auto", workdir: str | None = None,
                 max_instances: int = 100, hosts: bool = True, port: int = 0,
                 images: list[str] | None = None, flavors: list[dict] | None = None, spare_hosts: int = 0) -> None:
        """`images`: base image names every cloud offers (default debian-12); `flavors`: dicts of Flavor's fields;
        `spare_hosts`: blank hosts kept started ahead of boots, shared by the clouds (see `HostBackend.spares`)."""
        if spare_hosts and not hosts:
            raise ValueError("spare hosts need hosts: the simulator was asked for addresses only")
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="gk-cloudsim-")
        os.makedirs(self.workdir, exist_ok=True)
        self.backend: HostBackend | None = (
            default_backend(os.path.join(self.workdir, "hosts"), backend) if hosts else None)
        if self.backend is not None:
            os.makedirs(self.backend.workdir, exist_ok=True)
        self.servers: dict[str, CloudServer] = {}
        try:
            for i, name in enumerate(names):
                extra = {"images": list(images)} if images else {}
                if flavors:
                    extra["flavors"] = [Flavor(**f) for f in flavors]
                cloud = Cloud(name, self.backend, limits=Limits(max_instances=max_instances), **extra)
                self.servers[name] = CloudServer(cloud, port=port + i if port else 0).start()
            if self.backend is not None and spare_hosts:
                self.backend.spares.set_target(spare_hosts)
        except Exception:
            self.stop()
            raise
        self.clouds_yaml = os.path.join(self.workdir, "clouds.yaml")
        self.write_clouds_yaml(self.clouds_yaml)

    @property
    def backend_name(self) -> str:
        """How servers are made: network namespaces, loopback sshd, or none (addresses only)."""
        return type(self.backend).__name__ if self.backend is not None else "no hosts"

    def cloud(self, name: str) -> Cloud:
        return self.servers[name].cloud

    def write_clouds_yaml(self, path: str) -> None:
        with open(path, "w") as f:
            yaml.safe_dump({"clouds": {n: s.clouds_yaml_entry() for n, s in self.servers.items()}}, f)

    def stop(self) -> None:
        for server in self.servers.values():
            try:
                server.stop()
            except Exception:
                log.exception("stopping cloud %s", server.cloud.name)
        if self.backend is not None:
            self.backend.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> CloudSim:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
