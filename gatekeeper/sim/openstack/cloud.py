"""The simulated cloud's state: servers, images, keypairs, flavors, limits, and the faults a test turns on."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace

from gatekeeper.sim.openstack.hosts import HostBackend, HostSpec

log = logging.getLogger("gatekeeper.sim.openstack.cloud")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Faults:
    """Failure knobs. Counters are "the next N" (-1 means every one from now on)."""

    boot_delay: float = 0.0
    delete_delay: float = 0.0
    boot_errors: int = 0
    boot_error_message: str = "No valid host was found. There are not enough hosts available."
    no_ssh: int = 0
    api_errors: int = 0
    api_hang: float = 0.0
    hang_requests: int = 0
    delete_ignored: int = 0

    def take(self, name: str) -> bool:
        """Consume one unit of counter `name`; True when the fault applies."""
        n = getattr(self, name)
        if n == 0:
            return False
        if n > 0:
            setattr(self, name, n - 1)
        return True


@dataclass
class Limits:
    max_instances: int = 100
    max_cores: int = 1000
    max_ram_mb: int = 1024 * 1024


@dataclass
class Flavor:
    id: str
    name: str
    vcpus: int
    ram: int
    disk: int = 10
    extra_specs: dict = field(default_factory=dict)


# What every cloud offers unless told otherwise: the base images and flavors of layouts/openstack.yaml, plus the
# small/medium/large trio and debian-12 that tests and older configs name.
# the network every cloud has (Neutron's "private"); a server created with networks "none" shows its address there
PRIVATE_NETWORK_ID = "a1d3f5c7-0000-4000-8000-000000000001"
DEFAULT_IMAGES = ("debian-12", "ubuntu-22.04", "ubuntu-24.04")
DEFAULT_FLAVORS = (
    Flavor("1", "small", 1, 1024), Flavor("2", "medium", 2, 4096), Flavor("3", "large", 4, 8192),
    Flavor("11", "m1.small", 1, 2048, 20), Flavor("12", "m1.medium", 2, 4096, 40),
    Flavor("13", "m1.large", 4, 8192, 80, {"hw:cpu_policy": "shared"}),
)


@dataclass
class Image:
    id: str
    name: str
    status: str = "active"
    disk: bytes | None = field(default=None, repr=False)
    properties: dict = field(default_factory=dict)
    created_at: str = field(default_factory=_now)
    size: int = 0
    visibility: str = "public"
    disk_format: str = "qcow2"
    container_format: str = "bare"
    checksum: str | None = None


@dataclass
class Server:
    id: str
    name: str
    image_id: str
    flavor: Flavor
    key_name: str | None
    metadata: dict
    status: str = "BUILD"
    address: str | None = None
    fault: dict | None = None
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)
    deleted: bool = False
    seq: int = 0
    networks: list[str] = field(default_factory=list)  # ids of the networks it is attached to, as created
    user_data: str = ""  # as given to the create (decoded)
    networks_asked: object = None  # the create's `networks` as sent: "auto", "none" or a list of {"uuid": ...}
    console: list[str] = field(default_factory=list)  # its console's lines (Nova's console output)


class QuotaExceeded(Exception):
    pass


class NotFound(Exception):
    pass


class Cloud:
    """One simulated cloud. Booted servers are real SSH hosts from `backend` (None: addresses only, no hosts)."""

    def __init__(self, name: str, backend: HostBackend | None, *, limits: Limits | None = None,
                 flavors: list[Flavor] | None = None, images: tuple[str, ...] | list[str] = DEFAULT_IMAGES) -> None:
        self.name = name
        self.backend = backend
        self.limits = limits or Limits()
        self.faults = Faults()
        self.flavors = {f.id: f for f in (flavors or [replace(f, extra_specs=dict(f.extra_specs))
                                                      for f in DEFAULT_FLAVORS])}
        self.images: dict[str, Image] = {}
        for name_ in images:
            img = Image(str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.{name_}")), name_)
            self.images[img.id] = img
        self.servers: dict[str, Server] = {}
        self.keypairs: dict[str, dict] = {}
        self.networks: dict[str, str] = {PRIVATE_NETWORK_ID: "private"}  # Neutron's networks: id -> name
        self.lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix=f"cloud-{name}")
        self._fake_addr = 0
        self._seq = 0
        self.deleted_server_ids: list[str] = []
        self.created_server_ids: list[str] = []  # every server ever created, failed boots included
        self.most_building = 0  # the most servers in BUILD at once (how many boots a client ran together)
        if backend is not None:  # no spare host is started while a server of this cloud boots
            backend.spares.add_busy_check(self.building)

    # -- faults ----------------------------------------------------------------------------------
    def set_faults(self, **kw) -> Faults:
        with self.lock:
            names = {f.name for f in fields(Faults)}
            for k, v in kw.items():
                if k not in names:
                    raise ValueError(f"cloud {self.name}: unknown fault {k!r} (known: {', '.join(sorted(names))})")
                setattr(self.faults, k, type(getattr(self.faults, k))(v))
            return Faults(**asdict(self.faults))

    # -- networks --------------------------------------------------------------------------------
    def add_network(self, name: str) -> str:
        """A Neutron network servers may be created on; returns its id."""
        with self.lock:
            nid = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"network.{self.name}.{name}"))
            self.networks[nid] = name
            return nid

    # -- servers ---------------------------------------------------------------------------------
    def building(self) -> bool:
        """Whether a server is still in BUILD (its boot time not over)."""
        with self.lock:
            return any(s.status == "BUILD" and not s.deleted for s in self.servers.values())

    def usage(self) -> tuple[int, int, int]:
        live = [s for s in self.servers.values() if not s.deleted]
        return len(live), sum(s.flavor.vcpus for s in live), sum(s.flavor.ram for s in live)

    def create_server(self, name: str, image_id: str, flavor_id: str, key_name: str | None,
                      metadata: dict, networks: list[str] | None = None, user_data: str = "") -> Server:
        """`networks`: the ids of the networks to attach it to, as Nova takes them (an unknown one is refused)."""
        with self.lock:
            for nid in networks or []:
                if nid not in self.networks:
                    raise ValueError(f"Network {nid} could not be found.")  # Nova's 400 for it
            flavor = self.flavors.get(str(flavor_id))
            if flavor is None:
                flavor = next((f for f in self.flavors.values() if f.name == flavor_id), None)
            if flavor is None:
                raise ValueError(f"Flavor {flavor_id} could not be found.")
            image = self.images.get(image_id) or next(
                (i for i in self.images.values() if i.name == image_id), None)
            if image is None or image.status != "active":
                raise ValueError(f"Image {image_id} could not be found.")
            if key_name and key_name not in self.keypairs:
                raise ValueError(f"Invalid key_name provided: {key_name}")
            n, cores, ram = self.usage()
            lim = self.limits
            for what, used, need, cap in (("instances", n, 1, lim.max_instances),
                                          ("cores", cores, flavor.vcpus, lim.max_cores),
                                          ("ram", ram, flavor.ram, lim.max_ram_mb)):
                if used + need > cap:
                    raise QuotaExceeded(f"Quota exceeded for {what}: Requested {need}, but already used "
                                        f"{used} of {cap} {what}")
            self._seq += 1
            server = Server(str(uuid.uuid4()), name, image.id, flavor, key_name, dict(metadata or {}),
                            seq=self._seq, networks=list(networks or []), user_data=user_data)
            server.console += [f"[    0.000000] Linux version 6.1.0-sim (cloud {self.name}) #1 SMP",
                               f"cloud-init: booting {server.name} ({server.id})"]
            if user_data:
                server.console.append(f"cloud-init: running user data ({len(user_data)} bytes)")
            self.servers[server.id] = server
            self.created_server_ids.append(server.id)
            self.most_building = max(self.most_building, sum(1 for s in self.servers.values()
                                                             if s.status == "BUILD" and not s.deleted))
            error = self.faults.take("boot_errors")
            ssh = not self.faults.take("no_ssh")
            delay = self.faults.boot_delay
        # The host is made at once, and the server turns ACTIVE (or ERROR) `boot_delay` seconds after its create,
        # or when its host is up if that takes longer: as in a cloud, a boot's work is done within its boot time.
        if self.backend is not None:  # in BUILD now: a refill that asked before must ask again
            self.backend.spares.changed()
        self._pool.submit(self._boot, server, image, error, ssh, time.monotonic() + delay)
        return server

    def _boot(self, server: Server, image: Image, error: bool, ssh: bool, due: float = 0.0) -> None:
        with self.lock:
            if server.deleted:
                return
        address, failure = "", self.faults.boot_error_message if error else ""
        if not error:
            keys = self.keypairs.get(server.key_name, {}).get("public_key", "") if server.key_name else ""
            try:
                if self.backend is not None:
                    address = self.backend.boot(HostSpec(server.id, server.name, keys, image.disk, ssh))
                else:
                    with self.lock:
                        self._fake_addr += 1
                        address = f"127.0.{100 + self._fake_addr // 250}.{self._fake_addr % 250 + 1}"
            except Exception as e:
                log.warning("cloud %s: server %s failed to boot: %s", self.name, server.id, e)
                failure = f"Build of instance {server.id} aborted: {e}"
        with self.lock:
            server.console.append(f"sshd: {'listening on port 22' if ssh else 'failed to start'}" if address else
                                  f"kernel: boot failed: {failure}")
        wait = due - time.monotonic()
        if wait > 0:  # a timer, so that slow boots do not hold the workers that start hosts
            timer = threading.Timer(wait, self._booted, args=(server, address, failure))
            timer.daemon = True
            timer.start()
        else:
            self._booted(server, address, failure)

    def _booted(self, server: Server, address: str, failure: str) -> None:
        """The boot time is over: the server is ACTIVE on `address`, or ERROR with `failure`."""
        if failure:
            self._fail(server, failure)
            return
        with self.lock:
            if server.deleted:
                destroy = True
            else:
                destroy = False
                server.address = address
                server.status = "ACTIVE"
                server.updated = _now()
        if destroy and self.backend is not None:
            self.backend.destroy(server.id)

    def _fail(self, server: Server, message: str) -> None:
        with self.lock:
            server.status = "ERROR"
            server.fault = {"code": 500, "message": message, "created": _now()}
            server.updated = _now()

    def get_server(self, server_id: str) -> Server:
        with self.lock:
            s = self.servers.get(server_id)
            if s is None or s.deleted:
                raise NotFound(f"Server {server_id} could not be found.")
            return s

    def console_output(self, server_id: str, length: int | None = None) -> str:
        """The last `length` lines of the server's console (all of them when None)."""
        with self.lock:
            lines = self.get_server(server_id).console
            return "".join(line + "\n" for line in (lines[-length:] if length else lines))

    def list_servers(self) -> list[Server]:
        with self.lock:
            return sorted((s for s in self.servers.values() if not s.deleted), key=lambda s: s.seq)

    def delete_server(self, server_id: str) -> None:
        with self.lock:
            server = self.get_server(server_id)
            if self.faults.take("delete_ignored"):
                log.info("cloud %s: ignoring delete of %s (fault)", self.name, server_id)
                return
        self._pool.submit(self._delete, server)

    def _delete(self, server: Server) -> None:
        if self.faults.delete_delay:
            time.sleep(self.faults.delete_delay)
        if self.backend is not None:
            self.backend.destroy(server.id)
        with self.lock:
            server.deleted = True
            self.servers.pop(server.id, None)
            self.deleted_server_ids.append(server.id)

    # -- images ----------------------------------------------------------------------------------
    def snapshot(self, server_id: str, name: str, metadata: dict) -> Image:
        with self.lock:
            server = self.get_server(server_id)
            if server.status != "ACTIVE":
                raise ValueError(f"Cannot 'createImage' instance {server_id} while it is in vm_state "
                                 f"{server.status.lower()}")
            image = Image(str(uuid.uuid4()), name, status="queued", properties=dict(metadata or {}))
            self.images[image.id] = image
        self._pool.submit(self._save_snapshot, server, image)
        return image

    def _save_snapshot(self, server: Server, image: Image) -> None:
        image.status = "saving"
        try:
            disk = self.backend.snapshot(server.id) if self.backend is not None else b""
        except Exception as e:
            log.warning("cloud %s: snapshot of %s failed: %s", self.name, server.id, e)
            image.status = "killed"
            return
        with self.lock:
            image.disk = disk
            image.size = len(disk)
            image.checksum = hashlib.md5(disk).hexdigest()
            image.status = "active"

    def get_image(self, image_id: str) -> Image:
        with self.lock:
            img = self.images.get(image_id)
            if img is None:
                raise NotFound(f"No image found with ID {image_id}")
            return img

    def delete_image(self, image_id: str) -> None:
        with self.lock:
            self.get_image(image_id)
            del self.images[image_id]

    def close(self) -> None:
        """Stop background work and end this cloud's hosts (the backend itself belongs to its creator)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.backend is not None:
            self.backend.spares.remove_busy_check(self.building)
            with self.lock:
                ids = list(self.servers)
            for sid in ids:
                self.backend.destroy(sid)
