"""Records that travel through ZooKeeper: versioned dataclasses encoded as compact JSON."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, Self

# ZooKeeper's default jute.maxbuffer is 1 MiB; leave room for the request's own framing.
MAX_ZNODE_BYTES = 1024 * 1024 - 4096


class RecordTooLarge(ValueError):
    """A record does not fit in one znode and the caller did not ask for sharding."""


class RecordVersionError(ValueError):
    """A record was written by a newer gatekeeper whose format this one cannot read."""


def encode(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=False, ensure_ascii=False).encode()


def decode(raw: bytes) -> Any:
    return json.loads(raw.decode())


@dataclasses.dataclass
class Record:
    """Base for every record stored in ZooKeeper.

    Subclasses are dataclasses. `VERSION` is bumped when the format changes; `upgrade()` turns an older dict into
    the current shape so that a newer service can read what an older one wrote.  Keys this version does not know
    (fields a newer service added) are kept aside and written back by `to_dict`, so that an older service that
    rewrites a record never drops a newer one's fields.
    """

    VERSION: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        data = self.unknown_fields()
        data.update(dataclasses.asdict(self))
        data["_v"] = self.VERSION
        return data

    def unknown_fields(self) -> dict[str, Any]:
        """A copy of the keys this record was read with that this version has no field for."""
        return dict(self.__dict__.get("_unknown", {}))

    @classmethod
    def upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Bring `data`, written at `version`, to the current VERSION. Override when VERSION is bumped."""
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        data = dict(data)
        version = data.pop("_v", 1)
        if version > cls.VERSION and cls.strict_version():
            raise RecordVersionError(f"{cls.__name__} version {version} is newer than this gatekeeper reads")
        if version < cls.VERSION:
            data = cls.upgrade(data, version)
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        record = cls(**{k: v for k, v in data.items() if k in names})
        unknown = {k: v for k, v in data.items() if k not in names}
        if unknown:
            # Kept outside the dataclass fields so that equality, repr and asdict see only what this version knows.
            record.__dict__["_unknown"] = unknown
        return record

    @classmethod
    def strict_version(cls) -> bool:
        """Whether a newer version must be refused (when it changed meaning, not just added fields)."""
        return False

    def to_bytes(self) -> bytes:
        raw = encode(self.to_dict())
        if len(raw) > MAX_ZNODE_BYTES:
            raise RecordTooLarge(
                f"{type(self).__name__} is {len(raw)} bytes, more than one znode holds ({MAX_ZNODE_BYTES}); "
                "store it with gatekeeper.zk.sharding"
            )
        return raw

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        return cls.from_dict(decode(raw))
