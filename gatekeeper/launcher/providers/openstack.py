"""An OpenStack cloud through openstacksdk's proxy layer, configured by name from a clouds.yaml."""

from __future__ import annotations

import base64
import logging
import threading

import openstack
from openstack import exceptions as osexc
from openstack.config import loader

from gatekeeper.launcher.model import META_OWNER
from gatekeeper.launcher.providers.base import (
    Flavor,
    FlavorNotFound,
    ImageInfo,
    Limits,
    ProviderAdapter,
    ProviderError,
    QuotaError,
    ServerInfo,
)
from gatekeeper.launcher.providers.nova_http import NovaHTTP, NovaUnreachable

log = logging.getLogger("gatekeeper.launcher.providers.openstack")

CONSOLE_LINES = 200  # the last lines of a console log fetched for a failed boot


def is_quota_message(message: str) -> bool:
    m = (message or "").lower()
    return "quota" in m and ("exceed" in m or "exceeds" in m)


class OpenStackAdapter(ProviderAdapter):
    """One openstacksdk connection per provider, shared by the provider's threads."""

    def __init__(self, cloud: str, clouds_yaml: str | None, owner: str, region: str = "",
                 api_timeout: float = 30.0) -> None:
        self.cloud = cloud
        self.owner = owner
        files = [clouds_yaml] if clouds_yaml else None
        try:
            cfg = loader.OpenStackConfig(config_files=files).get_one(
                cloud=cloud, region_name=region or None, api_timeout=api_timeout)
        except Exception as e:
            raise ProviderError(f"cloud {cloud!r} in {clouds_yaml or 'clouds.yaml'}: {e}") from None
        self.conn = openstack.connection.Connection(config=cfg)
        self._nova = NovaHTTP(self.conn, api_timeout)  # the frequent compute calls (see its module)
        self._flavors: list[Flavor] | None = None  # the cloud's, smallest RAM first (then by name), read once
        self._images: dict[str, str] = {}
        self._networks: dict[str, str] = {}  # network name or id -> id, as Neutron answered
        self._lock = threading.Lock()

    def _call(self, what: str, fn, *args, **kw):
        """Call fn (a callable, or "service.method" of the connection) turning every failure into our errors.

        A method is looked up inside the try: the first use of a service authenticates and discovers it."""
        try:
            if isinstance(fn, str):
                service, method = fn.split(".")
                fn = getattr(getattr(self.conn, service), method)
            return fn(*args, **kw)
        except osexc.HttpException as e:
            msg = f"{e.status_code} {getattr(e, 'details', '') or e}"
            if e.status_code in (403, 413) and is_quota_message(str(e)):
                raise QuotaError(f"cloud {self.cloud}: {what}: {msg}") from None
            raise ProviderError(f"cloud {self.cloud}: {what}: {msg}") from None
        except (osexc.SDKException, NovaUnreachable) as e:
            raise ProviderError(f"cloud {self.cloud}: {what}: {e}") from None
        except Exception as e:  # connection errors, timeouts from requests/keystoneauth
            raise ProviderError(f"cloud {self.cloud}: {what}: {type(e).__name__}: {e}") from None

    def _compute(self, what: str, method: str, path: str, body: dict | None = None, microversion: str = ""):
        """A raw compute call (list, create, delete, console log), sent through NovaHTTP."""
        return self._call(what, lambda: self._nova.request(method, path, body, microversion))

    def flavor(self, name: str, min_ram: int = 0) -> Flavor:
        with self._lock:
            if self._flavors is None:
                listed = self._call("list flavors", lambda: list(self.conn.compute.flavors()))
                self._flavors = sorted((Flavor(f.name, f.vcpus or 1, f.ram or 0, f.id) for f in listed),
                                       key=lambda f: (f.ram, f.name))
            flavors = self._flavors
        return select_flavor(flavors, name, min_ram, f"cloud {self.cloud}")

    def forget_flavors(self) -> None:
        with self._lock:
            self._flavors = None

    def _image_id(self, image: str) -> str:
        with self._lock:
            if image in self._images:
                return self._images[image]
        found = self._call("find image", "image.find_image", image, ignore_missing=True)
        if found is None:
            raise ProviderError(f"cloud {self.cloud}: no image {image!r}")
        with self._lock:
            self._images[image] = found.id
        return found.id

    def _network_id(self, network: str) -> str:
        """The id of a network named by name or id, as Nodepool looks a pool's networks up in Neutron."""
        with self._lock:
            if network in self._networks:
                return self._networks[network]
        found = self._call(f"find network {network}", "network.find_network", network, ignore_missing=True)
        if found is None:
            raise ProviderError(f"cloud {self.cloud}: no network {network!r} (Neutron has none of that name or id)")
        with self._lock:
            self._networks[network] = found.id
        return found.id

    def create(self, name: str, image: str, flavor: str, metadata: dict, key_name: str = "",
               networks: tuple[str, ...] = (), userdata: str = "") -> str:
        # A raw request, as for polling: the SDK's resource objects cost more CPU than a boot's whole API traffic,
        # and a burst boots a hundred servers at once. From microversion 2.37 `networks` is required: without a
        # pool's own, "auto" (the project's network, what openstacksdk sends too; "none" is a server without any).
        nics = [{"uuid": self._network_id(network)} for network in networks]
        server = {"name": name, "imageRef": self._image_id(image), "flavorRef": self.flavor(flavor).id,
                  "metadata": {META_OWNER: self.owner, **metadata}, "networks": nics or "auto"}
        if key_name:
            server["key_name"] = key_name
        if userdata:
            server["user_data"] = base64.b64encode(userdata.encode()).decode()  # (Nova takes it encoded)
        what = f"create server {name}"
        resp = self._compute(what, "POST", "/servers", {"server": server}, "2.37")
        if not 200 <= resp.status_code < 300:
            msg = f"{resp.status_code} {_error_message(resp)}"
            if resp.status_code == 400:
                with self._lock:
                    # a network or flavor deleted and made again has a new id: look them up afresh (as Nodepool
                    # clears its caches on a 400 from Nova)
                    self._networks.clear()
                    self._flavors = None
            if resp.status_code in (403, 413) and is_quota_message(msg):
                raise QuotaError(f"cloud {self.cloud}: {what}: {msg}")
            raise ProviderError(f"cloud {self.cloud}: {what}: {msg}")
        try:
            return resp.json()["server"]["id"]
        except (ValueError, KeyError, TypeError):
            raise ProviderError(f"cloud {self.cloud}: {what}: the answer names no server id") from None

    def console_log(self, server_id: str) -> str:
        resp = self._compute(f"console log of server {server_id}", "POST", f"/servers/{server_id}/action",
                             {"os-getConsoleOutput": {"length": CONSOLE_LINES}})
        if not 200 <= resp.status_code < 300:
            raise ProviderError(f"cloud {self.cloud}: console log of server {server_id}: {resp.status_code} "
                                f"{_error_message(resp)}")
        try:
            output = resp.json().get("output")
        except (ValueError, AttributeError):  # not JSON, or not an object
            output = None
        if output is not None and not isinstance(output, str):
            output = None
        if output is None:
            raise ProviderError(f"cloud {self.cloud}: console log of server {server_id}: an answer without "
                                f"\"output\": {resp.text[:200]!r}")
        return output

    def poll(self) -> dict[str, ServerInfo]:
        # A raw listing (as Zuul does): one request per page and plain JSON, no SDK resource objects, so polling
        # a hundred booting servers stays cheap.
        out = {}
        url = "/servers/detail"
        while url:
            resp = self._compute("list servers", "GET", url)
            if not 200 <= resp.status_code < 300:
                raise ProviderError(f"cloud {self.cloud}: list servers: {resp.status_code} {_error_message(resp)}")
            try:
                body = resp.json()
                if not isinstance(body, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                raise ProviderError(f"cloud {self.cloud}: list servers: an answer that is not Nova's JSON ({e}): "
                                    f"{resp.text[:200]!r}") from None
            for s in body.get("servers", []):
                meta = s.get("metadata") or {}
                if meta.get(META_OWNER) != self.owner:
                    continue
                fault = (s.get("fault") or {}).get("message", "")
                out[s["id"]] = ServerInfo(s["id"], s.get("name", ""), s.get("status", ""),
                                          s.get("accessIPv4") or _first_address(s.get("addresses")), 22, fault,
                                          dict(meta))
            url = next((link["href"] for link in body.get("servers_links", []) if link.get("rel") == "next"), "")
        return out

    def delete(self, server_id: str) -> None:
        resp = self._compute(f"delete server {server_id}", "DELETE", f"/servers/{server_id}")
        if not 200 <= resp.status_code < 300 and resp.status_code != 404:  # already gone is what we wanted
            raise ProviderError(f"cloud {self.cloud}: delete server {server_id}: {resp.status_code} "
                                f"{_error_message(resp)}")

    def snapshot(self, server_id: str, name: str, metadata: dict) -> str:
        image = self._call(f"snapshot server {server_id}", "compute.create_server_image", server_id,
                           name=name, metadata={META_OWNER: self.owner, **metadata}, wait=False)
        return image.id if hasattr(image, "id") else str(image)

    def get_image(self, image_id: str) -> ImageInfo | None:
        try:
            img = self.conn.image.get_image(image_id)
        except osexc.NotFoundException:
            return None
        except Exception as e:
            raise ProviderError(f"cloud {self.cloud}: get image {image_id}: {e}") from None
        return ImageInfo(img.id, img.name, img.status, dict(img.properties or {}))

    def list_images(self) -> list[ImageInfo]:
        images = self._call("list images", lambda: list(self.conn.image.images()))
        return [ImageInfo(i.id, i.name, i.status, dict(i.properties or {})) for i in images
                if (i.properties or {}).get(META_OWNER) == self.owner]

    def delete_image(self, image_id: str) -> None:
        self._call(f"delete image {image_id}", "image.delete_image", image_id, ignore_missing=True)

    def limits(self) -> Limits:
        a = self._call("read limits", "compute.get_limits").absolute
        return Limits(a.instances, a.total_cores, a.total_ram, a.instances_used or 0, a.total_cores_used or 0,
                      a.total_ram_used or 0)

    def ensure_keypair(self, name: str, public_key: str) -> None:
        existing = self._call("find keypair", "compute.find_keypair", name, ignore_missing=True)
        if existing is not None and existing.public_key.strip() == public_key.strip():
            return
        if existing is not None:
            self._call("delete keypair", "compute.delete_keypair", name)
        self._call("create keypair", "compute.create_keypair", name=name, public_key=public_key)

    def is_quota_message(self, message: str) -> bool:
        return is_quota_message(message)

    def close(self) -> None:
        self._nova.close()
        try:
            self.conn.close()
        except Exception:
            pass


def select_flavor(flavors: list[Flavor], name: str, min_ram: int, where: str) -> Flavor:
    """Nodepool's choice among a cloud's flavors (sorted by RAM, then name): with `min_ram`, the first with at
    least that RAM whose name contains `name` (any name when empty); without, the one whose name or id is `name`.
    `where` begins the error's sentence."""
    if min_ram:
        found = next((f for f in flavors if f.ram >= min_ram and name in f.name), None)
        if found is None:
            among = f' whose name contains "{name}"' if name else ""
            have = ", ".join(f"{f.name} ({f.ram} MB)" for f in flavors) or "none"
            raise FlavorNotFound(f"{where}: no flavor{among} has at least {min_ram} MB of RAM (flavors: {have})")
        return found
    found = next((f for f in flavors if name in (f.name, f.id)), None)
    if found is None:
        raise FlavorNotFound(f"{where}: no flavor {name!r}")
    return found


def _first_address(addresses: dict | None) -> str:
    for entries in (addresses or {}).values():
        for e in entries:
            if e.get("version") == 4:
                return e.get("addr", "")
    return ""


def _error_message(resp) -> str:
    """The message of a Nova error answer ({"forbidden": {"message": ...}}), or its text."""
    try:
        body = resp.json()
        return next(v["message"] for v in body.values() if isinstance(v, dict) and "message" in v)
    except (ValueError, StopIteration, AttributeError, TypeError):
        return (resp.text or resp.reason or "").strip()[:300]
