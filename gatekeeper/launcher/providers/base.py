"""What the launcher asks of a provider. It never knows which kind of cloud it talks to."""

from __future__ import annotations

from dataclasses import dataclass, field


class QuotaError(Exception):
    """The cloud refused for quota: retry later, do not count it as a failed launch."""


class ProviderError(Exception):
    """The cloud failed a call (API error, timeout)."""


class FlavorNotFound(ProviderError):
    """The cloud answered, and has no flavor a label asks for: not a passing failure (no launch can succeed)."""


@dataclass
class ServerInfo:
    """A server as the launcher needs it: state is BUILD, ACTIVE, ERROR (or another cloud status)."""

    id: str
    name: str = ""
    state: str = "BUILD"
    address: str = ""
    port: int = 22
    fault: str = ""
    metadata: dict = field(default_factory=dict)
    username: str = ""  # the login user, when the server decides it (a static host); "": the label's


@dataclass
class ImageInfo:
    id: str
    name: str = ""
    state: str = "queued"  # queued, saving, active, killed, ...
    metadata: dict = field(default_factory=dict)


@dataclass
class Limits:
    """How much the cloud allows in all, and how much of it was in use when read."""

    instances: int = 1 << 30
    cores: int = 1 << 30
    ram: int = 1 << 40
    instances_used: int = 0
    cores_used: int = 0
    ram_used: int = 0


@dataclass
class Flavor:
    name: str
    vcpus: int = 1
    ram: int = 0  # MB
    id: str = ""


class ProviderAdapter:
    """create / poll / delete / list / snapshot, plus limits and images. Every method may block on the network.

    Attributes say how the provider's servers behave, so the launcher never asks which kind of cloud it is:
    `recycles_nodes` (a released node's server is handed out again instead of deleted), `boots` (create starts a
    server that must be waited for and scanned; False: it is up at once), `uses_keypair` (the launcher's SSH key
    is uploaded to it)."""

    recycles_nodes = False
    boots = True
    uses_keypair = True

    def create(self, name: str, image: str, flavor: str, metadata: dict, key_name: str = "",
               networks: tuple[str, ...] = (), userdata: str = "") -> str:
        """Start a server (attached to `networks`, names or ids, when given; with cloud-init `userdata`); returns
        its id (raises QuotaError or ProviderError)."""
        raise NotImplementedError

    def console_log(self, server_id: str) -> str:
        """The server's console output, to tell why its boot failed ("" where a server has none)."""
        return ""

    def poll(self) -> dict[str, ServerInfo]:
        """All servers of ours by id, in one call (the launcher's single view of their states)."""
        raise NotImplementedError

    def delete(self, server_id: str) -> None:
        raise NotImplementedError

    def list(self) -> list[ServerInfo]:
        return list(self.poll().values())

    def snapshot(self, server_id: str, name: str, metadata: dict) -> str:
        """Start a snapshot of a server; returns the image id (poll it with get_image)."""
        raise NotImplementedError

    def get_image(self, image_id: str) -> ImageInfo | None:
        raise NotImplementedError

    def list_images(self) -> list[ImageInfo]:
        return []

    def delete_image(self, image_id: str) -> None:
        raise NotImplementedError

    def limits(self) -> Limits:
        return Limits()

    def flavor(self, name: str, min_ram: int = 0) -> Flavor:
        """The flavor a label boots with: the one named `name` (name or id); with `min_ram`, the smallest with at
        least that much RAM whose name contains `name` (Nodepool's min-ram). Raises FlavorNotFound."""
        return Flavor(name)

    def forget_flavors(self) -> None:
        """Read the cloud's flavors afresh at the next `flavor` (one may have been added, or made again)."""

    def ensure_keypair(self, name: str, public_key: str) -> None:
        pass

    def adopt(self, server_id: str, metadata: dict) -> None:
        """A node record of ours names this server (after a launcher restart): count it as taken."""

    def is_quota_message(self, message: str) -> bool:
        """Whether a server's fault message says the cloud refused it for quota (not a health failure)."""
        m = (message or "").lower()
        return "quota" in m and ("exceed" in m or "exceeds" in m)

    def is_missing_image_message(self, message: str) -> bool:
        """Whether a failed boot says its image is gone (the upload is bad, not the cloud)."""
        m = (message or "").lower()
        return "image" in m and ("not found" in m or "no image" in m or "could not be found" in m)

    def ready_now(self, server_id: str) -> ServerInfo | None:
        """For a provider whose servers need no boot: the server as it is (None: wait for it to boot)."""
        return None

    def scan_timeout(self, server_id: str) -> float | None:
        """Seconds a server that is up at once may take to show its host keys (None: the boot-timeout)."""
        return None

    def configured(self, server_id: str) -> bool:
        """Whether the server is still part of the provider's configuration (a static host removed from the
        layout is not): a node on one that is not is deleted, never handed out again."""
        return True

    def pinned_host_key(self, server_id: str) -> str:
        """A host key configured for the server ("" to scan it)."""
        return ""

    def free_for(self, label: str) -> int | None:
        """How many more nodes of `label` it could hold now, if it knows better than the quota (None)."""
        return None

    def username_for(self, label: str) -> str | None:
        """The login user for `label` if the adapter decides it (None: the label's pool config says)."""
        return None

    def standing_labels(self) -> list[str]:
        """Labels with a server that is always there and idle: each should have a ready node."""
        return []

    def close(self) -> None:
        pass
