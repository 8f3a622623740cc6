"""HTTP front of a simulated cloud: the Keystone v3, Nova v2.1 and Glance v2 subset that openstacksdk uses.

Paths: /identity (Keystone), /compute/v2.1 (Nova), /image (Glance), and /sim (fault controls and state, for tests
and operators; /sim/spare-hosts is the simulator's, shared by its clouds). One :class:`CloudServer` serves one
:class:`Cloud` on its own port.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from gatekeeper.sim.openstack.cloud import Cloud, Image, NotFound, QuotaExceeded, Server
from gatekeeper.sim.openstack.extras import ExtrasHandler, extra_routes

log = logging.getLogger("gatekeeper.sim.openstack.api")

NOVA_MIN, NOVA_MAX = "2.1", "2.96"
USERNAME, PASSWORD, PROJECT = "gatekeeper", "secret", "gatekeeper"


class HttpError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _mv(v: str) -> tuple[int, int]:
    a, b = v.split(".")
    return int(a), int(b)


class _APIServer(ThreadingHTTPServer):
    # A cloud's API listens with a backlog of hundreds (Apache's 511, uWSGI's 100 behind it); Python's default of 5
    # drops the connections of a burst (a launcher booting 100 servers at once), whose clients retry after 1 s.
    request_queue_size = 128


class CloudServer:
    """A ThreadingHTTPServer on 127.0.0.1 for one cloud; `url` is its base, `auth_url` what clouds.yaml names."""

    def __init__(self, cloud: Cloud, host: str = "127.0.0.1", port: int = 0, nova_max: str = NOVA_MAX) -> None:
        self.cloud = cloud
        self.nova_max = nova_max
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str, int]] = []
        handler = type("Handler", (_Handler,), {"sim": self})
        self.httpd = _APIServer((host, port), handler)
        self.httpd.daemon_threads = True
        # a client that disconnects before reading its answer is no error of the cloud's
        self.httpd.handle_error = lambda request, address: log.info(  # type: ignore[method-assign]
            "cloud %s: connection from %s ended abruptly", cloud.name, address[0])
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.auth_url = f"{self.url}/identity/v3"
        self._thread: threading.Thread | None = None

    def start(self) -> CloudServer:
        # a short poll: shutdown() waits for it (the default half second is paid by every stop)
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"cloud-sim-{self.cloud.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread:
            self._thread.join()
        self.cloud.close()

    def clouds_yaml_entry(self) -> dict:
        """This cloud's entry for a clouds.yaml `clouds:` mapping (v3password against the simulated Keystone)."""
        return {
            "auth_type": "v3password",
            "auth": {"auth_url": self.auth_url, "username": USERNAME, "password": PASSWORD,
                     "project_name": PROJECT, "user_domain_name": "Default", "project_domain_name": "Default"},
            "region_name": "RegionOne",
            "identity_api_version": 3,
        }


class _Handler(ExtrasHandler, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sim: CloudServer

    def log_message(self, fmt: str, *args) -> None:  # quiet; requests are kept in sim.requests
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, each answer waits ~40 ms for a delayed ACK
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- plumbing --------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self.raw = self.rfile.read(length) if length else b""
        path = url.path.rstrip("/") or "/"
        cloud = self.sim.cloud
        status = 500
        try:
            if not path.startswith("/sim"):
                with cloud.lock:
                    hang = cloud.faults.api_hang if cloud.faults.take("hang_requests") else 0.0
                    fail = cloud.faults.take("api_errors")
                if hang:
                    time.sleep(hang)
                if fail:
                    raise HttpError(500, "computeFault", "Unexpected API Error (simulated).")
            for m, pattern, fn in ROUTES:
                if m == method:
                    match = pattern.fullmatch(path)
                    if match:
                        if fn.__name__ not in PUBLIC:
                            self._check_token()
                        status = fn(self, *match.groups()) or 200
                        break
            else:
                raise HttpError(404, "itemNotFound", f"no route for {method} {url.path}")
        except HttpError as e:
            status = self._error(path, e.status, e.kind, e.message)
        except NotFound as e:
            status = self._error(path, 404, "itemNotFound", str(e))
        except QuotaExceeded as e:
            status = self._error(path, 403, "forbidden", str(e))
        except ValueError as e:
            status = self._error(path, 400, "badRequest", str(e))
        except (BrokenPipeError, ConnectionResetError):
            # the client went away mid-answer (a killed launcher, say): nobody is left to answer
            log.info("cloud %s: client gone during %s %s", cloud.name, method, self.path)
            self.close_connection = True
            return
        except Exception as e:  # a bug in the simulator: answer like a real cloud would
            log.exception("cloud %s: %s %s", cloud.name, method, self.path)
            status = self._error(path, 500, "computeFault", str(e))
        self.sim.requests.append((method, url.path, status))

    def _error(self, path: str, status: int, kind: str, message: str) -> int:
        """An error body in the shape of the service that would answer: Keystone's (also what keystonemiddleware
        answers any service with on a bad token), Neutron's, or Nova's and Glance's."""
        if status == 401 or path.startswith("/identity"):
            titles = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
            return self._json(status, {"error": {"code": status, "title": titles.get(status, "Error"),
                                                 "message": message}},
                              {"WWW-Authenticate": f'Keystone uri="{self.base}/identity"'} if status == 401 else None)
        if path.startswith("/network"):
            kind = {404: "NotFound", 400: "BadRequest", 403: "Forbidden"}.get(status, "NeutronError")
            return self._json(status, {"NeutronError": {"type": kind, "message": message, "detail": ""}})
        return self._json(status, {kind: {"code": status, "message": message}})

    def _check_token(self) -> None:
        token = self.headers.get("X-Auth-Token")
        if token not in self.sim.tokens:
            raise HttpError(401, "unauthorized", "The request you have made requires authentication.")

    def _json(self, status: int, body: object, headers: dict | None = None) -> int:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        return status

    def _empty(self, status: int, headers: dict | None = None) -> int:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        return status

    def _body(self) -> dict:
        try:
            return json.loads(self.raw or b"{}")
        except json.JSONDecodeError as e:
            raise HttpError(400, "badRequest", f"malformed JSON: {e}") from None

    def _microversion(self) -> tuple[int, int]:
        v = self.headers.get("OpenStack-API-Version", "").replace("compute", "").strip() or \
            self.headers.get("X-OpenStack-Nova-API-Version", "").strip()
        if not v:
            return _mv(NOVA_MIN)
        if v == "latest":
            return _mv(self.sim.nova_max)
        if _mv(v) > _mv(self.sim.nova_max) or _mv(v) < _mv(NOVA_MIN):
            raise HttpError(406, "notAcceptable", f"Version {v} is not supported by the API.")
        return _mv(v)

    @property
    def base(self) -> str:
        return self.sim.url

    # -- keystone --------------------------------------------------------------------------------
    def identity_root(self) -> int:
        return self._json(300, {"versions": {"values": [
            {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
             "links": [{"rel": "self", "href": f"{self.base}/identity/v3/"}]}]}})

    def identity_v3(self) -> int:
        return self._json(200, {"version": {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                                            "links": [{"rel": "self", "href": f"{self.base}/identity/v3/"}]}})

    def issue_token(self) -> int:
        ident = self._body().get("auth", {}).get("identity", {})
        pw = ident.get("password", {}).get("user", {})
        if "password" in ident.get("methods", []) and (pw.get("name") != USERNAME or pw.get("password") != PASSWORD):
            raise HttpError(401, "unauthorized", "The request you have made requires authentication.")
        token = secrets.token_hex(16)
        self.sim.tokens.add(token)
        expires = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() + 3600))
        dom = {"id": "default", "name": "Default"}

        def ep(url: str) -> list:
            return [{"id": secrets.token_hex(4), "interface": i, "region": "RegionOne", "region_id": "RegionOne",
                     "url": url} for i in ("public", "internal")]
        catalog = [
            {"type": "identity", "name": "keystone", "id": "k", "endpoints": ep(f"{self.base}/identity")},
            {"type": "compute", "name": "nova", "id": "n", "endpoints": ep(f"{self.base}/compute/v2.1")},
            {"type": "image", "name": "glance", "id": "g", "endpoints": ep(f"{self.base}/image")},
            {"type": "network", "name": "neutron", "id": "q", "endpoints": ep(f"{self.base}/network")},
        ]
        body = {"token": {"expires_at": expires, "issued_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                          "methods": ["password"], "roles": [{"id": "r", "name": "member"}],
                          "project": {"id": "p-" + PROJECT, "name": PROJECT, "domain": dom},
                          "user": {"id": "u-" + USERNAME, "name": USERNAME, "domain": dom},
                          "catalog": catalog}}
        return self._json(201, body, {"X-Subject-Token": token})

    # -- nova ------------------------------------------------------------------------------------
    def nova_version(self) -> int:
        return self._json(200, {"version": {
            "id": "v2.1", "status": "CURRENT", "version": self.sim.nova_max, "min_version": NOVA_MIN,
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{self.base}/compute/v2.1/"}]}})

    def _flavor_view(self, f) -> dict:
        return {"id": f.id, "name": f.name, "ram": f.ram, "vcpus": f.vcpus, "disk": f.disk,
                "OS-FLV-EXT-DATA:ephemeral": 0, "swap": 0, "os-flavor-access:is_public": True,
                "rxtx_factor": 1.0, "extra_specs": dict(f.extra_specs),
                "links": [{"rel": "self", "href": f"{self.base}/compute/v2.1/flavors/{f.id}"}]}

    def list_flavors(self) -> int:
        return self._json(200, {"flavors": [self._flavor_view(f) for f in self.sim.cloud.flavors.values()]})

    def get_flavor(self, fid: str) -> int:
        f = self.sim.cloud.flavors.get(fid)
        if f is None:
            raise NotFound(f"Flavor {fid} could not be found.")
        return self._json(200, {"flavor": self._flavor_view(f)})

    def _server_view(self, s: Server, mv: tuple[int, int]) -> dict:
        addresses = {}
        if s.address:
            # the address on the first network it was created on (networks "none": the cloud's private one), and
            # each other network named, with no address of its own
            names = [self.sim.cloud.networks.get(nid, nid) for nid in s.networks] or ["private"]
            addresses = {name: [] for name in names}
            addresses[names[0]] = [{"version": 4, "addr": s.address, "OS-EXT-IPS:type": "fixed",
                                    "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"}]
        if mv >= (2, 47):
            flavor = {"vcpus": s.flavor.vcpus, "ram": s.flavor.ram, "disk": s.flavor.disk, "ephemeral": 0,
                      "swap": 0, "original_name": s.flavor.name, "extra_specs": dict(s.flavor.extra_specs)}
        else:
            flavor = {"id": s.flavor.id,
                      "links": [{"rel": "bookmark", "href": f"{self.base}/compute/flavors/{s.flavor.id}"}]}
        view = {
            "id": s.id, "name": s.name, "status": s.status, "addresses": addresses,
            "accessIPv4": s.address or "", "accessIPv6": "", "metadata": s.metadata, "flavor": flavor,
            "image": {"id": s.image_id}, "key_name": s.key_name, "created": s.created, "updated": s.updated,
            "tenant_id": "p-" + PROJECT, "user_id": "u-" + USERNAME, "hostId": "sim",
            "OS-EXT-STS:vm_state": s.status.lower(), "OS-EXT-STS:task_state": None,
            "OS-EXT-STS:power_state": 1 if s.status == "ACTIVE" else 0, "OS-EXT-AZ:availability_zone": "nova",
            "config_drive": "", "progress": 0, "security_groups": [{"name": "default"}],
            "links": [{"rel": "self", "href": f"{self.base}/compute/v2.1/servers/{s.id}"}],
        }
        if mv >= (2, 26):
            view["tags"] = []
        if s.fault:
            view["fault"] = s.fault
        return view

    def create_server(self) -> int:
        mv = self._microversion()
        req = self._body().get("server")
        if not isinstance(req, dict) or not req.get("name") or not req.get("flavorRef"):
            raise HttpError(400, "badRequest", "Invalid input: server name and flavorRef are required")
        if mv >= (2, 37) and "networks" not in req:
            raise HttpError(400, "badRequest", "Invalid input for field/attribute server: 'networks' is a "
                                                "required property")
        s = self.sim.cloud.create_server(req["name"], req.get("imageRef", ""), str(req["flavorRef"]),
                                         req.get("key_name"), req.get("metadata") or {},
                                         self._requested_networks(req.get("networks")),
                                         self._user_data(req.get("user_data")))
        s.networks_asked = req.get("networks")
        return self._json(202, {"server": {"id": s.id, "adminPass": secrets.token_hex(6),
                                           "links": [{"rel": "self",
                                                      "href": f"{self.base}/compute/v2.1/servers/{s.id}"}],
                                           "security_groups": [{"name": "default"}]}},
                          {"Location": f"{self.base}/compute/v2.1/servers/{s.id}"})

    @staticmethod
    def _user_data(value) -> str:
        """A create's user_data, which Nova takes base64-encoded (and refuses otherwise)."""
        if value is None:
            return ""
        try:
            return base64.b64decode(value, validate=True).decode("utf-8", "replace")
        except (TypeError, ValueError, binascii.Error):
            raise HttpError(400, "badRequest", "Invalid input for field/attribute user_data: not valid base64") \
                from None

    @staticmethod
    def _requested_networks(networks) -> list[str]:
        """A create's `networks` as Nova takes them: "none", "auto" (no network of their own here), or a list of
        {"uuid": network id}; the ids of the networks named."""
        if networks is None or networks in ("none", "auto"):
            return []
        if not isinstance(networks, list) or not all(isinstance(n, dict) for n in networks):
            raise HttpError(400, "badRequest", "Invalid input for field/attribute networks: expected \"none\", "
                                                "\"auto\" or a list of {\"uuid\": ...}")
        for n in networks:
            if set(n) != {"uuid"} or not isinstance(n["uuid"], str):
                raise HttpError(400, "badRequest", f"Invalid input for field/attribute networks: {n!r} (this "
                                                    "simulator takes a network by its uuid only)")
        return [n["uuid"] for n in networks]

    def list_servers(self, detail: str | None = None) -> int:
        mv = self._microversion()
        servers = self.sim.cloud.list_servers()
        q = self.query
        if q.get("name"):
            rx = re.compile(q["name"])
            servers = [s for s in servers if rx.search(s.name)]
        if q.get("status"):
            servers = [s for s in servers if s.status == q["status"].upper()]
        page, links = self._page(servers, f"{self.base}/compute/v2.1/servers{detail or ''}")
        if detail:
            views = [self._server_view(s, mv) for s in page]
        else:
            views = [{"id": s.id, "name": s.name, "links": []} for s in page]
        body: dict = {"servers": views}
        if links:
            body["servers_links"] = [{"rel": "next", "href": links}]
        return self._json(200, body)

    def _page(self, items: list, href: str) -> tuple[list, str | None]:
        marker = self.query.get("marker")
        if marker:
            ids = [i.id for i in items]
            if marker not in ids:
                return [], None
            items = items[ids.index(marker) + 1:]
        limit = self.query.get("limit")
        if limit:
            n = int(limit)
            if len(items) > n:
                return items[:n], f"{href}?limit={n}&marker={items[n - 1].id}"
            return items, None
        return items, None

    def get_server(self, sid: str) -> int:
        mv = self._microversion()
        return self._json(200, {"server": self._server_view(self.sim.cloud.get_server(sid), mv)})

    def delete_server(self, sid: str) -> int:
        self.sim.cloud.delete_server(sid)
        return self._empty(204)

    def server_action(self, sid: str) -> int:
        mv = self._microversion()
        body = self._body()
        if "createImage" in body:
            req = body["createImage"]
            img = self.sim.cloud.snapshot(sid, req.get("name", "snapshot"), req.get("metadata") or {})
            loc = {"Location": f"{self.base}/image/v2/images/{img.id}"}
            if mv >= (2, 45):
                return self._json(202, {"image_id": img.id}, loc)
            return self._empty(202, loc)
        if "os-getConsoleOutput" in body:
            length = (body["os-getConsoleOutput"] or {}).get("length")
            if length is not None and (not isinstance(length, int) or isinstance(length, bool) or length < -1):
                raise HttpError(400, "badRequest", f"Invalid input for field/attribute length. Value: {length}.")
            output = self.sim.cloud.console_output(sid, None if length in (None, -1) else length)
            return self._json(200, {"output": output})
        raise HttpError(400, "badRequest", f"unsupported server action {sorted(body)}")

    def _keypair_view(self, kp: dict) -> dict:
        return {k: kp[k] for k in ("name", "public_key", "fingerprint", "type", "user_id")}

    def list_keypairs(self) -> int:
        return self._json(200, {"keypairs": [{"keypair": self._keypair_view(k)}
                                             for k in self.sim.cloud.keypairs.values()]})

    def create_keypair(self) -> int:
        req = self._body().get("keypair") or {}
        name, pub = req.get("name"), req.get("public_key")
        if not name or not pub:
            raise HttpError(400, "badRequest", "keypair name and public_key are required (no key generation)")
        cloud = self.sim.cloud
        with cloud.lock:
            if name in cloud.keypairs:
                raise HttpError(409, "conflictingRequest", f"Key pair '{name}' already exists.")
            import hashlib
            fp = hashlib.md5(pub.encode()).hexdigest()
            cloud.keypairs[name] = {"name": name, "public_key": pub, "type": req.get("type", "ssh"),
                                    "fingerprint": ":".join(fp[i:i + 2] for i in range(0, 32, 2)),
                                    "user_id": "u-" + USERNAME}
            return self._json(200, {"keypair": self._keypair_view(cloud.keypairs[name])})

    def get_keypair(self, name: str) -> int:
        kp = self.sim.cloud.keypairs.get(name)
        if kp is None:
            raise NotFound(f"Keypair {name} not found.")
        return self._json(200, {"keypair": self._keypair_view(kp)})

    def delete_keypair(self, name: str) -> int:
        if self.sim.cloud.keypairs.pop(name, None) is None:
            raise NotFound(f"Keypair {name} not found.")
        return self._empty(202)

    def limits(self) -> int:
        cloud = self.sim.cloud
        with cloud.lock:
            n, cores, ram = cloud.usage()
            lim = cloud.limits
        return self._json(200, {"limits": {"rate": [], "absolute": {
            "maxTotalInstances": lim.max_instances, "maxTotalCores": lim.max_cores,
            "maxTotalRAMSize": lim.max_ram_mb, "totalInstancesUsed": n, "totalCoresUsed": cores,
            "totalRAMUsed": ram, "maxServerMeta": 128, "maxTotalKeypairs": 100, "maxServerGroups": 10,
            "maxServerGroupMembers": 10, "totalServerGroupsUsed": 0}}})

    def availability_zones(self, detail: str | None = None) -> int:
        return self._json(200, {"availabilityZoneInfo": [
            {"zoneName": "nova", "zoneState": {"available": True}, "hosts": None}]})

    # -- glance ----------------------------------------------------------------------------------
    def glance_versions(self) -> int:
        return self._json(300, {"versions": [
            {"id": "v2.16", "status": "CURRENT", "links": [{"rel": "self", "href": f"{self.base}/image/v2/"}]}]})

    def _image_view(self, i: Image) -> dict:
        view = {"id": i.id, "name": i.name, "status": i.status, "visibility": i.visibility,
                "disk_format": i.disk_format, "container_format": i.container_format, "size": i.size or None,
                "checksum": i.checksum, "created_at": i.created_at, "updated_at": i.created_at,
                "min_disk": 0, "min_ram": 0, "protected": False, "os_hidden": False, "tags": [],
                "owner": "p-" + PROJECT, "file": f"/v2/images/{i.id}/file", "self": f"/v2/images/{i.id}",
                "schema": "/v2/schemas/image"}
        view.update(i.properties)
        return view

    def list_images(self) -> int:
        cloud = self.sim.cloud
        with cloud.lock:
            images = sorted(cloud.images.values(), key=lambda i: (i.created_at, i.id))
        q = self.query
        if q.get("name"):
            images = [i for i in images if i.name == q["name"]]
        if q.get("status"):
            images = [i for i in images if i.status == q["status"]]
        if q.get("os_hidden", "false").lower() == "true":
            images = []
        page, nxt = self._page(images, "/v2/images")
        body: dict = {"images": [self._image_view(i) for i in page], "first": "/v2/images",
                      "schema": "/v2/schemas/images"}
        if nxt:
            body["next"] = nxt
        return self._json(200, body)

    def get_image(self, iid: str) -> int:
        return self._json(200, self._image_view(self.sim.cloud.get_image(iid)))

    def create_image(self) -> int:
        import uuid
        req = self._body()
        known = {"name", "disk_format", "container_format", "visibility", "id", "min_disk", "min_ram",
                 "protected", "tags", "os_hidden"}
        img = Image(req.get("id") or str(uuid.uuid4()), req.get("name", ""), status="queued",
                    disk_format=req.get("disk_format") or "qcow2",
                    container_format=req.get("container_format") or "bare",
                    properties={k: v for k, v in req.items() if k not in known})
        with self.sim.cloud.lock:
            self.sim.cloud.images[img.id] = img
        return self._json(201, self._image_view(img), {"Location": f"{self.base}/image/v2/images/{img.id}"})

    def upload_image(self, iid: str) -> int:
        import hashlib
        img = self.sim.cloud.get_image(iid)
        with self.sim.cloud.lock:
            img.disk = self.raw
            img.size = len(self.raw)
            img.checksum = hashlib.md5(self.raw).hexdigest()
            img.status = "active"
        return self._empty(204)

    def patch_image(self, iid: str) -> int:
        img = self.sim.cloud.get_image(iid)
        ops = json.loads(self.raw or b"[]")
        with self.sim.cloud.lock:
            for op in ops:
                key = op.get("path", "").lstrip("/")
                if op.get("op") in ("add", "replace"):
                    if key == "name":
                        img.name = op["value"]
                    else:
                        img.properties[key] = op["value"]
                elif op.get("op") == "remove":
                    img.properties.pop(key, None)
        return self._json(200, self._image_view(img))

    def delete_image(self, iid: str) -> int:
        self.sim.cloud.delete_image(iid)
        return self._empty(204)

    # -- simulator controls ----------------------------------------------------------------------
    def sim_faults(self) -> int:
        from dataclasses import asdict
        if self.command == "POST":
            try:
                return self._json(200, asdict(self.sim.cloud.set_faults(**self._body())))
            except (TypeError, ValueError) as e:
                raise HttpError(400, "badRequest", str(e)) from None
        return self._json(200, asdict(self.sim.cloud.faults))

    def sim_state(self) -> int:
        cloud = self.sim.cloud
        with cloud.lock:
            body = {"name": cloud.name,
                    "servers": [{"id": s.id, "name": s.name, "status": s.status, "address": s.address,
                                 "metadata": s.metadata} for s in cloud.list_servers()],
                    "images": [{"id": i.id, "name": i.name, "status": i.status} for i in cloud.images.values()],
                    "limits": {"max_instances": cloud.limits.max_instances},
                    "servers_created": len(cloud.created_server_ids)}
        return self._json(200, body)

    def sim_limits(self) -> int:
        cloud = self.sim.cloud
        with cloud.lock:
            for k, v in self._body().items():
                if not hasattr(cloud.limits, k):
                    raise HttpError(400, "badRequest", f"unknown limit {k!r}")
                setattr(cloud.limits, k, int(v))
        return self._json(200, {"max_instances": cloud.limits.max_instances})

    def sim_spare_hosts(self) -> int:
        """The hosts kept started ahead of boots (shared by the clouds of one simulator): GET says how many are
        wanted, ready and starting; POST {"count": N} keeps N from now on (ending those beyond N); with
        "refill": false, those N are started once and a spare a boot takes is not replaced."""
        backend = self.sim.cloud.backend
        if backend is None:
            raise HttpError(400, "badRequest", "this simulator makes no hosts (addresses only): no spare hosts")
        if self.command == "POST":
            body = self._body()
            count = body.get("count") if isinstance(body, dict) else None
            refill = body.get("refill", True) if isinstance(body, dict) else True
            if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= backend.spares.MAX:
                raise HttpError(400, "badRequest",
                                f"count: expected a whole number from 0 to {backend.spares.MAX}, got {count!r}")
            if not isinstance(refill, bool):
                raise HttpError(400, "badRequest", f"refill: expected true or false, got {refill!r}")
            return self._json(200, backend.spares.set_target(count, refill).to_dict())
        return self._json(200, backend.spares.status().to_dict())


def _r(method: str, pattern: str, fn) -> tuple:
    return method, re.compile(pattern), fn


H = _Handler
NOVA = "/compute/v2.1"
ID = r"([^/]+)"
ROUTES = [
    _r("GET", "/identity", H.identity_root),
    _r("GET", "/identity/v3", H.identity_v3),
    _r("POST", "/identity/v3/auth/tokens", H.issue_token),
    _r("GET", NOVA, H.nova_version),
    _r("GET", NOVA + r"/flavors(?:/detail)?", H.list_flavors),
    _r("GET", NOVA + r"/flavors/" + ID, H.get_flavor),
    _r("POST", NOVA + r"/servers", H.create_server),
    _r("GET", NOVA + r"/servers(/detail)?", H.list_servers),
    _r("GET", NOVA + r"/servers/" + ID, H.get_server),
    _r("DELETE", NOVA + r"/servers/" + ID, H.delete_server),
    _r("POST", NOVA + r"/servers/" + ID + "/action", H.server_action),
    _r("GET", NOVA + r"/os-keypairs", H.list_keypairs),
    _r("POST", NOVA + r"/os-keypairs", H.create_keypair),
    _r("GET", NOVA + r"/os-keypairs/" + ID, H.get_keypair),
    _r("DELETE", NOVA + r"/os-keypairs/" + ID, H.delete_keypair),
    _r("GET", NOVA + r"/limits", H.limits),
    _r("GET", NOVA + r"/os-availability-zone(/detail)?", H.availability_zones),
    _r("GET", "/image", H.glance_versions),
    _r("GET", "/image/v2", H.glance_versions),
    _r("GET", r"/image/v2/images", H.list_images),
    _r("POST", r"/image/v2/images", H.create_image),
    _r("GET", r"/image/v2/images/" + ID, H.get_image),
    _r("PATCH", r"/image/v2/images/" + ID, H.patch_image),
    _r("PUT", r"/image/v2/images/" + ID + "/file", H.upload_image),
    _r("DELETE", r"/image/v2/images/" + ID, H.delete_image),
    _r("GET", "/sim/faults", H.sim_faults),
    _r("POST", "/sim/faults", H.sim_faults),
    _r("GET", "/sim/state", H.sim_state),
    _r("POST", "/sim/limits", H.sim_limits),
    _r("GET", "/sim/spare-hosts", H.sim_spare_hosts),
    _r("POST", "/sim/spare-hosts", H.sim_spare_hosts),
]
ROUTES += extra_routes(H)
PUBLIC = {"identity_root", "identity_v3", "issue_token", "nova_version", "glance_versions", "network_versions",
          "sim_faults", "sim_state", "sim_limits", "sim_spare_hosts"}
