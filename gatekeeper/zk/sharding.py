"""Data larger than one znode, stored as compressed shards and swapped in atomically.

Layout under `path`: the node's own data names the current generation (`g-0000000007`); the generation's
children hold the zlib-compressed data in order.  A writer creates a complete new generation, then points `path`
at it with one versioned set (so readers never see half a write, and a racing writer's swap is never undone), then
removes the older generations.
"""

from __future__ import annotations

import zlib

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from gatekeeper.zk.record import MAX_ZNODE_BYTES

SHARD_BYTES = MAX_ZNODE_BYTES // 2
WRITE_ATTEMPTS = 10  # a writer that keeps losing the race to others gives up (the others' data stands)


class ShardedReadError(RuntimeError):
    """The data kept being replaced while it was read (or names a generation that is gone)."""


def write_sharded(client: KazooClient, path: str, data: bytes) -> None:
    """Replace the data stored at `path` with `data`, of any size.

    Writers may race (two schedulers starting at once both publish the layout): each builds its own generation and
    points `path` at it only if no other writer did so since it began; otherwise it drops its generation and starts
    again, so `path` never names a generation another writer removed, and the last write to succeed wins whole.
    """
    try:
        client.create(path, b"", makepath=True)
    except NodeExistsError:
        pass
    packed = zlib.compress(data, 1)
    for attempt in Retrying(stop=stop_after_attempt(WRITE_ATTEMPTS), retry=retry_if_exception_type(_Raced),
                            reraise=True):
        with attempt:
            _write_generation(client, path, packed)


class _Raced(Exception):
    """Another writer changed `path` (or removed our half-built generation) while we wrote."""


def _write_generation(client: KazooClient, path: str, packed: bytes) -> None:
    _, stat = client.get(path)  # the version our swap expects: any other writer's swap after this one wins
    gen = client.create(f"{path}/g-", b"", sequence=True)
    try:
        for i in range(0, max(len(packed), 1), SHARD_BYTES):
            client.create(f"{gen}/{i // SHARD_BYTES:06d}", packed[i : i + SHARD_BYTES])
        name = gen.rsplit("/", 1)[1]
        client.set(path, name.encode(), version=stat.version)
    except (BadVersionError, NoNodeError):
        _delete_generation(client, gen)  # (NoNode: a writer that swapped first removed it as an old generation)
        raise _Raced(path) from None
    # older generations only: a newer one is another writer's, still being built or already swapped in
    for child in client.get_children(path):
        if child.startswith("g-") and child < name:
            _delete_generation(client, f"{path}/{child}")


def read_sharded(client: KazooClient, path: str) -> bytes | None:
    """The data at `path`, or None if nothing was ever written there."""
    for _ in range(5):
        try:
            pointer, _ = client.get(path)
        except NoNodeError:
            return None
        if not pointer:
            return None
        gen = f"{path}/{pointer.decode()}"
        try:
            parts = sorted(client.get_children(gen))
            packed = b"".join(client.get(f"{gen}/{p}")[0] for p in parts)
        except NoNodeError:
            continue  # a writer swapped generations under us: read the new one
        return zlib.decompress(packed)
    raise ShardedReadError(f"{path}: sharded data kept changing while being read")


def delete_sharded(client: KazooClient, path: str) -> None:
    client.delete(path, recursive=True)


def _delete_generation(client: KazooClient, gen: str) -> None:
    try:
        client.delete(gen, recursive=True)
    except NoNodeError:
        pass
