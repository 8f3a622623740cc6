"""One thread per provider that lists the provider's servers while anyone waits on a boot or a delete.

A single list call serves every waiter, so 100 booting servers cost one API call per interval, not 100.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future

from gatekeeper.launcher.providers.base import ProviderAdapter, ProviderError, ServerInfo

log = logging.getLogger("gatekeeper.launcher.poller")

SETTLED = ("ACTIVE", "ERROR", "SHUTOFF")


class ServerPoller:
    def __init__(self, name: str, adapter: ProviderAdapter, interval: float = 0.2) -> None:
        self.name = name
        self.adapter = adapter
        self.interval = interval
        self._boots: dict[str, Future] = {}
        self._gone: dict[str, Future] = {}
        self._cond = threading.Condition()
        self._stop = False
        self.last_seen: dict[str, ServerInfo] = {}
        self._thread = threading.Thread(target=self._run, name=f"poller-{name}", daemon=True)
        self._thread.start()

    def wait_settled(self, server_id: str) -> Future:
        """A future resolving to the server's ServerInfo once ACTIVE or ERROR (None if it vanished); cancelled at
        once when the poller has stopped (nothing would ever resolve it: a launch asking then would wait out its
        launch-timeout, and hold up the process's exit as long)."""
        fut: Future = Future()
        with self._cond:
            if self._stop:
                fut.cancel()
                return fut
            self._boots[server_id] = fut
            fut.registered = time.monotonic()
            self._cond.notify()
        return fut

    def wait_gone(self, server_id: str) -> Future:
        """A future resolving to True once the server no longer appears in listings; cancelled at once when the
        poller has stopped."""
        fut: Future = Future()
        with self._cond:
            if self._stop:
                fut.cancel()
                return fut
            self._gone[server_id] = fut
            self._cond.notify()
        return fut

    def forget(self, server_id: str) -> None:
        with self._cond:
            self._boots.pop(server_id, None)
            self._gone.pop(server_id, None)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
            for fut in list(self._boots.values()) + list(self._gone.values()):
                fut.cancel()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._boots and not self._gone:
                    self._cond.wait()
                if self._stop:
                    return
            started = time.monotonic()
            try:
                servers = self.adapter.poll()
            except ProviderError as e:
                log.warning("provider %s: listing servers failed: %s", self.name, e)
                servers = None
            except Exception:  # never let the one poller of a provider die
                log.exception("provider %s: listing servers failed", self.name)
                servers = None
            if servers is not None:
                self.last_seen = servers
                with self._cond:
                    for sid, fut in list(self._boots.items()):
                        info = servers.get(sid)
                        if info is None and fut.registered >= started:
                            continue  # registered after this listing began: not proof that it vanished
                        if info is None or info.state in SETTLED:
                            del self._boots[sid]
                            if not fut.done():
                                fut.set_result(info)
                    for sid, fut in list(self._gone.items()):
                        if sid not in servers:
                            del self._gone[sid]
                            if not fut.done():
                                fut.set_result(True)
            with self._cond:
                if self._stop:
                    return
                self._cond.wait(max(0.0, self.interval - (time.monotonic() - started)))
