"""A TCP forwarder on loopback that can blackhole its open connections: bytes stop moving both ways and
nothing is closed, as when a firewall or a NAT starts dropping a flow's packets. New connections still pass."""

from __future__ import annotations

import socket
import threading


class BlackholeProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self._stopped = threading.Event()
        self._drop_new = False

    def start(self) -> BlackholeProxy:
        threading.Thread(target=self._accept, name="blackhole-accept", daemon=True).start()
        return self

    def blackhole(self, new_too: bool = False) -> int:
        """Drop, from now on, every byte of the connections open now (and with `new_too`, of those opened
        until restore()); returns how many are open."""
        with self._lock:
            self._drop_new = new_too
            for _, _, dropped in self._pairs:
                dropped.set()
            return len(self._pairs)

    def restore(self) -> None:
        """Let new connections through again (the blackholed ones stay dead, as a dropped flow does)."""
        with self._lock:
            self._drop_new = False

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        with self._lock:
            for a, b, _ in self._pairs:
                for s in (a, b):
                    try:
                        s.close()
                    except OSError:
                        pass

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            dropped = threading.Event()
            with self._lock:
                if self._drop_new:
                    dropped.set()
                self._pairs.append((client, upstream, dropped))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, dropped), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, dropped: threading.Event) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not dropped.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        if not dropped.is_set():  # a real close passes through; a blackholed flow never closes
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
