"""What the launcher asks of a provider. It never knows which kind of cloud it talks to."""

from __future__ import annotations

from dataclasses import dataclass, field


class QuotaError(Exception):
    """The cloud refused for quota: retry later, do not count it as a failed launch."""


class ProviderError(Exception):
    """The cloud failed a call (API error, timeout)."""


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
    ram: int = 0


class ProviderAdapter:
    """create / poll / delete / list / snapshot, plus limits and images. Every method may block on the network."""

    def create(self, name: str, image: str, flavor: str, metadata: dict, key_name: str = "") -> str:
        """Start a server; returns its id (raises QuotaError or ProviderError)."""
        raise NotImplementedError

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

    def flavor(self, name: str) -> Flavor:
        return Flavor(name)

    def ensure_keypair(self, name: str, public_key: str) -> None:
        pass

    def close(self) -> None:
        pass
