"""Data larger than one znode, stored as compressed shards and swapped in atomically.

Layout under `path`: the node's own data names the current generation (`g-0000000007`); the generation's
children hold the zlib-compressed data in order.  A writer creates a complete new generation, then points `path`
at it with one versioned set (so readers never see half a write), then removes the old generation.
"""

from __future__ import annotations

import zlib

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

from gatekeeper.zk.record import MAX_ZNODE_BYTES

SHARD_BYTES = MAX_ZNODE_BYTES // 2


def write_sharded(client: KazooClient, path: str, data: bytes) -> None:
    """Replace the data stored at `path` with `data`, of any size.

    One writer at a time: callers hold the owner's lock (a pipeline's, say). Readers need no lock.
    """
    try:
        client.create(path, b"", makepath=True)
    except NodeExistsError:
        pass
    packed = zlib.compress(data, 1)
    gen = client.create(f"{path}/g-", b"", sequence=True)
    for i in range(0, max(len(packed), 1), SHARD_BYTES):
        client.create(f"{gen}/{i // SHARD_BYTES:06d}", packed[i : i + SHARD_BYTES])
    name = gen.rsplit("/", 1)[1]
    client.set(path, name.encode())
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
    raise RuntimeError(f"{path}: sharded data kept changing while being read")


def delete_sharded(client: KazooClient, path: str) -> None:
    client.delete(path, recursive=True)


def _delete_generation(client: KazooClient, gen: str) -> None:
    try:
        client.delete(gen, recursive=True)
    except NoNodeError:
        pass
