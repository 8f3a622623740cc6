"""A statsd client: fire-and-forget UDP datagrams (`prefix.name:value|type`), never blocking the caller."""

from __future__ import annotations

import logging
import re
import socket

log = logging.getLogger("gatekeeper.metrics.statsd")

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")
MAX_DATAGRAM = 1400  # stay under a typical MTU so lines are never fragmented


def key_part(value: object) -> str:
    """One dotted-key component: statsd uses dots as separators, so dots and other specials become '_'."""
    return _UNSAFE.sub("_", str(value)) or "_"


class StatsdClient:
    """Send counters, gauges and timers to a statsd server at host:port, every key under `prefix`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8125, prefix: str = "gatekeeper") -> None:
        self.address = (host, int(port))
        self.prefix = prefix.rstrip(".")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def close(self) -> None:
        self._sock.close()

    def _key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def incr(self, name: str, value: int = 1) -> None:
        self.send([f"{self._key(name)}:{value}|c"])

    def gauge(self, name: str, value: float) -> None:
        self.send([f"{self._key(name)}:{_fmt(value)}|g"])

    def timing(self, name: str, milliseconds: float) -> None:
        self.send([f"{self._key(name)}:{_fmt(milliseconds)}|ms"])

    def send(self, lines: list[str]) -> None:
        """Send lines, packed several to a datagram; a full buffer or an absent server only loses metrics."""
        packet: list[str] = []
        size = 0
        for line in lines:
            if packet and size + len(line) + 1 > MAX_DATAGRAM:
                self._send_packet(packet)
                packet, size = [], 0
            packet.append(line)
            size += len(line) + 1
        if packet:
            self._send_packet(packet)

    def _send_packet(self, packet: list[str]) -> None:
        try:
            self._sock.sendto("\n".join(packet).encode(), self.address)
        except OSError as exc:
            log.debug("statsd %s:%s: %s", *self.address, exc)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
