"""The rest of the OpenStack surface that openstacksdk and the `openstack` CLI touch beyond booting servers.

Nova's quota sets, server metadata and flavor extra specs, a read-only Neutron (its networks, one subnet,
quotas) so that the SDK stops warning that no network service exists, and the clouds' images and flavors from a
YAML file. Mixed into the API handler of `gatekeeper.sim.openstack.api`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from gatekeeper.sim.openstack.cloud import DEFAULT_FLAVORS, DEFAULT_IMAGES, PRIVATE_NETWORK_ID, Flavor, NotFound

NETWORK_ID = PRIVATE_NETWORK_ID
SUBNET_ID = "a1d3f5c7-0000-4000-8000-000000000002"


class SimConfigError(ValueError):
    """A cloud-simulator config file that cannot be used; the message names the file and the key."""


@dataclass
class SimConfig:
    """Images and flavors each simulated cloud offers."""

    images: list[str] = field(default_factory=lambda: list(DEFAULT_IMAGES))
    flavors: list[dict[str, Any]] = field(default_factory=lambda: [asdict(f) for f in DEFAULT_FLAVORS])

    @classmethod
    def load(cls, path: str) -> SimConfig:
        """Read `images:` (names) and `flavors:` (id, name, vcpus, ram, disk, extra_specs) from a YAML file."""
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except OSError as e:
            raise SimConfigError(f"{path}: cannot read the cloud simulator config: {e.strerror}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise SimConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise SimConfigError(f"{path}: expected a mapping with images and flavors")
        unknown = sorted(set(data) - {"images", "flavors"})
        if unknown:
            raise SimConfigError(f"{path}: unknown key {unknown[0]!r} (expected images, flavors)")
        config = cls()
        if "images" in data:
            images = data["images"]
            if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
                raise SimConfigError(f"{path}: images: expected a list of image names")
            config.images = images
        if "flavors" in data:
            config.flavors = [_flavor(path, i, f) for i, f in enumerate(data["flavors"] or [])]
        return config


def _flavor(path: str, index: int, data: Any) -> dict[str, Any]:
    where = f"{path}: flavors[{index}]"
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise SimConfigError(f"{where}: expected a mapping with at least a name")
    out: dict[str, Any] = {"id": str(data.get("id", data["name"])), "name": data["name"]}
    for key, default in (("vcpus", 1), ("ram", 1024), ("disk", 10)):
        value = data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SimConfigError(f"{where}: {key}: expected a whole number, got {value!r}")
        out[key] = value
    specs = data.get("extra_specs", {})
    if not isinstance(specs, dict):
        raise SimConfigError(f"{where}: extra_specs: expected a mapping")
    out["extra_specs"] = {str(k): str(v) for k, v in specs.items()}
    unknown = sorted(set(data) - {"id", "name", "vcpus", "ram", "disk", "extra_specs"})
    if unknown:
        raise SimConfigError(f"{where}: unknown key {unknown[0]!r}")
    return out


class ExtrasHandler:
    """Handler methods for the routes in EXTRA_ROUTES (mixed into the API handler, which provides `_json`,
    `_empty`, `_body`, `base` and `sim`)."""

    sim: Any

    # -- keystone: projects (the CLI and the SDK's cloud layer resolve a project name through these) ---------
    def _project_view(self) -> dict[str, Any]:
        return {"id": "p-gatekeeper", "name": "gatekeeper", "domain_id": "default", "enabled": True,
                "is_domain": False, "parent_id": "default", "description": "", "tags": [],
                "links": {"self": f"{self.base}/identity/v3/projects/p-gatekeeper"}}

    def list_projects(self) -> int:
        name = self.query.get("name")
        projects = [p for p in [self._project_view()] if not name or p["name"] == name or p["id"] == name]
        return self._json(200, {"projects": projects, "links": {"self": f"{self.base}/identity/v3/projects",
                                                                "next": None, "previous": None}})

    def get_project(self, pid: str) -> int:
        if pid not in ("p-gatekeeper", "gatekeeper"):
            raise NotFound(f"Could not find project: {pid}.")
        return self._json(200, {"project": self._project_view()})

    # -- nova: quota sets ------------------------------------------------------------------------
    def _quota_set(self, project: str, detail: bool) -> dict[str, Any]:
        cloud = self.sim.cloud
        with cloud.lock:
            n, cores, ram = cloud.usage()
            lim = cloud.limits
            keypairs = len(cloud.keypairs)
        caps = {"instances": (lim.max_instances, n), "cores": (lim.max_cores, cores), "ram": (lim.max_ram_mb, ram),
                "key_pairs": (100, keypairs), "metadata_items": (128, 0), "server_groups": (10, 0),
                "server_group_members": (10, 0), "injected_files": (5, 0), "injected_file_content_bytes": (10240, 0),
                "injected_file_path_bytes": (255, 0)}
        body: dict[str, Any] = {"id": project}
        for name, (limit, used) in caps.items():
            body[name] = {"limit": limit, "in_use": used, "reserved": 0} if detail else limit
        return body

    def get_quota_set(self, project: str, detail: str | None = None) -> int:
        return self._json(200, {"quota_set": self._quota_set(project, bool(detail))})

    def get_quota_defaults(self, project: str) -> int:
        return self._json(200, {"quota_set": self._quota_set(project, False)})

    # -- nova: server metadata -------------------------------------------------------------------
    def get_server_metadata(self, sid: str) -> int:
        server = self.sim.cloud.get_server(sid)
        with self.sim.cloud.lock:
            return self._json(200, {"metadata": dict(server.metadata)})

    def set_server_metadata(self, sid: str) -> int:
        """POST merges into the metadata, PUT replaces it (Nova's semantics)."""
        items = _str_map(self._body().get("metadata"), "metadata")
        server = self.sim.cloud.get_server(sid)
        with self.sim.cloud.lock:
            if self.command == "PUT":
                server.metadata.clear()
            server.metadata.update(items)
            return self._json(200, {"metadata": dict(server.metadata)})

    def get_server_metadata_item(self, sid: str, key: str) -> int:
        server = self.sim.cloud.get_server(sid)
        with self.sim.cloud.lock:
            if key not in server.metadata:
                raise NotFound(f"Metadata item was not found: {key}")
            return self._json(200, {"meta": {key: server.metadata[key]}})

    def put_server_metadata_item(self, sid: str, key: str) -> int:
        items = _str_map(self._body().get("meta"), "meta")
        if list(items) != [key]:
            raise ValueError("Request body and URI mismatch")
        server = self.sim.cloud.get_server(sid)
        with self.sim.cloud.lock:
            server.metadata.update(items)
        return self._json(200, {"meta": items})

    def delete_server_metadata_item(self, sid: str, key: str) -> int:
        server = self.sim.cloud.get_server(sid)
        with self.sim.cloud.lock:
            if server.metadata.pop(key, None) is None:
                raise NotFound(f"Metadata item was not found: {key}")
        return self._empty(204)

    # -- nova: flavor extra specs ----------------------------------------------------------------
    def _flavor(self, fid: str) -> Flavor:
        flavor = self.sim.cloud.flavors.get(fid)
        if flavor is None:
            raise NotFound(f"Flavor {fid} could not be found.")
        return flavor

    def get_extra_specs(self, fid: str) -> int:
        return self._json(200, {"extra_specs": dict(self._flavor(fid).extra_specs)})

    def get_extra_spec(self, fid: str, key: str) -> int:
        specs = self._flavor(fid).extra_specs
        if key not in specs:
            raise NotFound(f"Flavor {fid} has no extra specs with key {key}.")
        return self._json(200, {key: specs[key]})

    # -- neutron (read-only) ---------------------------------------------------------------------
    def network_versions(self) -> int:
        return self._json(200, {"versions": [
            {"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": f"{self.base}/network/v2.0/"}]}]})

    def network_extensions(self) -> int:
        return self._json(200, {"extensions": []})

    def _network_view(self, nid: str = NETWORK_ID) -> dict[str, Any]:
        return {"id": nid, "name": self.sim.cloud.networks[nid], "status": "ACTIVE", "admin_state_up": True,
                "shared": False, "subnets": [SUBNET_ID] if nid == NETWORK_ID else [], "router:external": False,
                "tenant_id": "p-gatekeeper",
                "project_id": "p-gatekeeper", "mtu": 1500, "port_security_enabled": True, "tags": [],
                "description": "", "availability_zones": ["nova"], "is_default": nid == NETWORK_ID}

    def list_networks(self) -> int:
        networks = [self._network_view(nid) for nid in list(self.sim.cloud.networks)]
        name = self.query.get("name")
        if name:
            networks = [n for n in networks if n["name"] == name]
        if self.query.get("id"):
            networks = [n for n in networks if n["id"] == self.query["id"]]
        if self.query.get("router:external", "").lower() == "true":
            networks = []
        return self._json(200, {"networks": networks})

    def get_network(self, nid: str) -> int:
        if nid not in self.sim.cloud.networks:
            raise NotFound(f"Network {nid} could not be found.")
        return self._json(200, {"network": self._network_view(nid)})

    def list_subnets(self) -> int:
        return self._json(200, {"subnets": [{
            "id": SUBNET_ID, "name": "private-subnet", "network_id": NETWORK_ID, "ip_version": 4,
            "cidr": "169.254.0.0/16", "gateway_ip": None, "enable_dhcp": True, "tenant_id": "p-gatekeeper",
            "project_id": "p-gatekeeper", "dns_nameservers": [], "host_routes": [], "tags": []}]})

    def list_ports(self) -> int:
        ports = []
        for s in self.sim.cloud.list_servers():
            if s.address and self.query.get("device_id", s.id) == s.id:
                ports.append({"id": f"port-{s.id}", "network_id": (s.networks or [NETWORK_ID])[0], "device_id": s.id,
                              "device_owner": "compute:nova", "status": "ACTIVE", "mac_address": "fa:16:3e:00:00:01",
                              "fixed_ips": [{"subnet_id": SUBNET_ID, "ip_address": s.address}],
                              "tenant_id": "p-gatekeeper", "project_id": "p-gatekeeper"})
        return self._json(200, {"ports": ports})

    def list_floating_ips(self) -> int:
        return self._json(200, {"floatingips": []})

    def list_security_groups(self) -> int:
        return self._json(200, {"security_groups": [{"id": "sg-default", "name": "default", "description": "",
                                                     "security_group_rules": [], "tenant_id": "p-gatekeeper",
                                                     "project_id": "p-gatekeeper"}]})

    def get_network_quota(self, project: str, detail: str | None = None) -> int:
        counts = {"network": (100, 1), "subnet": (100, 1), "port": (500, len(self.sim.cloud.list_servers())),
                  "router": (10, 0), "floatingip": (50, 0), "security_group": (10, 1),
                  "security_group_rule": (100, 0)}
        if detail:
            quota = {k: {"limit": lim, "used": used, "reserved": 0} for k, (lim, used) in counts.items()}
        else:
            quota = {k: lim for k, (lim, _) in counts.items()}
        return self._json(200, {"quota": quota})


def _str_map(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"Invalid input: '{name}' must be an object")
    out = {}
    for k, v in value.items():
        if not isinstance(v, str) or not 0 < len(k) <= 255 or len(v) > 255:
            raise ValueError(f"Invalid input for field/attribute {name}: {k!r}")
        out[k] = v
    return out


def extra_routes(handler: type) -> list[tuple[str, re.Pattern, Any]]:
    """The routes the methods above serve, in the API module's (method, pattern, function) form."""
    nova, ident = "/compute/v2.1", r"([^/]+)"
    h = handler
    table = [
        ("GET", r"/identity/v3/projects", h.list_projects),
        ("GET", r"/identity/v3/projects/" + ident, h.get_project),
        ("GET", r"/identity/v3/users/" + ident + r"/projects", h.list_projects),
        ("GET", nova + r"/os-quota-sets/" + ident + r"(/detail)?", h.get_quota_set),
        ("GET", nova + r"/os-quota-sets/" + ident + r"/defaults", h.get_quota_defaults),
        ("GET", nova + r"/servers/" + ident + r"/metadata", h.get_server_metadata),
        ("POST", nova + r"/servers/" + ident + r"/metadata", h.set_server_metadata),
        ("PUT", nova + r"/servers/" + ident + r"/metadata", h.set_server_metadata),
        ("GET", nova + r"/servers/" + ident + r"/metadata/" + ident, h.get_server_metadata_item),
        ("PUT", nova + r"/servers/" + ident + r"/metadata/" + ident, h.put_server_metadata_item),
        ("DELETE", nova + r"/servers/" + ident + r"/metadata/" + ident, h.delete_server_metadata_item),
        ("GET", nova + r"/flavors/" + ident + r"/os-extra_specs", h.get_extra_specs),
        ("GET", nova + r"/flavors/" + ident + r"/os-extra_specs/" + ident, h.get_extra_spec),
        ("GET", r"/network", h.network_versions),
        ("GET", r"/network/v2\.0/extensions", h.network_extensions),
        ("GET", r"/network/v2\.0/networks", h.list_networks),
        ("GET", r"/network/v2\.0/networks/" + ident, h.get_network),
        ("GET", r"/network/v2\.0/subnets", h.list_subnets),
        ("GET", r"/network/v2\.0/ports", h.list_ports),
        ("GET", r"/network/v2\.0/floatingips", h.list_floating_ips),
        ("GET", r"/network/v2\.0/security-groups", h.list_security_groups),
        ("GET", r"/network/v2\.0/quotas/" + ident + r"(/details)?", h.get_network_quota),
    ]
    return [(m, re.compile(p), fn) for m, p, fn in table]
