"""The live console relay: the executor running a build streams its console over HTTP; the web passes it on to
the client as it comes, either as plain text or as server-sent events (what a browser's EventSource reads).

The relay is asynchronous (asyncio and h11), so a watcher costs no thread, and it ends when either side goes away
or the web stops.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit

import h11

log = logging.getLogger("gatekeeper.web.console")

CONNECT_TIMEOUT = 10.0
READ_SIZE = 65536
SNAPSHOT_QUIET = 0.3  # a console silent this long has given all it holds for a snapshot


class Upstream:
    """An open console stream from one executor: `chunks()` yields the body as it arrives; `close()` ends it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: h11.Connection) -> None:
        self._reader, self._writer, self._conn = reader, writer, conn
        self._loop = asyncio.get_running_loop()

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while True:
                event = self._conn.next_event()
                if event is h11.NEED_DATA:
                    self._conn.receive_data(await self._reader.read(READ_SIZE))
                elif isinstance(event, h11.Data):
                    yield bytes(event.data)
                else:  # EndOfMessage, ConnectionClosed
                    return
        except (h11.RemoteProtocolError, OSError) as exc:
            log.info("console stream ended early: %s", exc)
        finally:
            self.close()

    def close(self) -> None:
        self._writer.close()

    def close_threadsafe(self) -> None:
        """Close from another thread (the web stopping): the relay then ends at once."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.close)


async def open_console(base: str, build_id: str) -> Upstream | None:
    """The console of `build_id` from the executor at `base`, or None when that executor does not run it."""
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    path = f"{url.path.rstrip('/')}/console/{quote(build_id, safe='')}"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        log.warning("console of build %s: executor %s unreachable: %s", build_id, base, exc)
        return None
    conn = h11.Connection(h11.CLIENT)
    try:
        writer.write(conn.send(h11.Request(method="GET", target=path, headers=[
            ("Host", f"{host}:{port}"), ("Accept", "text/plain"), ("Connection", "close")])))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(READ_SIZE), CONNECT_TIMEOUT)
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                if event.status_code != 200:
                    writer.close()
                    return None  # not this executor's build
                return Upstream(reader, writer, conn)
            elif isinstance(event, h11.InformationalResponse):
                continue
            else:
                raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} before the response", 502)
    except (h11.ProtocolError, OSError, TimeoutError) as exc:
        log.warning("console of build %s: executor %s answered badly: %s", build_id, base, exc)
        writer.close()
        return None


async def find_console(bases: list[str], build_id: str) -> Upstream | None:
    """Ask each executor in turn; the first one that has the build's console streams it."""
    for base in bases:
        upstream = await open_console(base, build_id)
        if upstream is not None:
            return upstream
    return None


async def skip(chunks: AsyncIterator[bytes], count: int) -> AsyncIterator[bytes]:
    """`chunks` without their first `count` bytes (what a client already has)."""
    async for chunk in chunks:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:]
        count = 0


async def available(chunks: AsyncIterator[bytes]) -> bytes:
    """What the console holds now: chunks until it ends or stays quiet for SNAPSHOT_QUIET seconds."""
    held = b""
    try:
        while True:
            held += await asyncio.wait_for(anext(chunks), SNAPSHOT_QUIET)
    except (StopAsyncIteration, TimeoutError):
        pass
    finally:
        await chunks.aclose()
    return held


async def as_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Server-sent events: one `data:` event per batch of whole lines, then an `end` event when the build's
    console closes (so the browser stops instead of reconnecting)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    yield b"retry: 3000\n\n"
    async for chunk in chunks:
        text = pending + decoder.decode(chunk)
        lines = text.split("\n")
        pending = lines.pop()
        if lines:
            yield _event(lines)
    pending += decoder.decode(b"", final=True)
    if pending:
        yield _event([pending])
    yield b"event: end\ndata: the console is closed\n\n"


def _event(lines: list[str]) -> bytes:
    # a bare \r would end an SSE line early: the console's own line endings are \n
    return ("".join(f"data: {line.replace(chr(13), '')}\n" for line in lines) + "\n").encode()
