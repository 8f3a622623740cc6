"""The node pool's image builds and providers in ZooKeeper (live registrations, operators' drain switch, published
health), and the record reading every node-pool store shares. gatekeeper.zk.nodes.NodeStore builds on it."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.recipe.watchers import DataWatch

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.node_records import IMAGE_DELETING, ImageBuild, ProviderState

log = logging.getLogger("gatekeeper.zk.nodes")

_READ_ERRORS = (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError)


class UnreadableRecord(Exception):
    """A znode under the node pool holds something that is not a record of its kind."""


class ProviderStore:
    """Image builds and providers; also what every node-pool store needs to read records safely."""

    def __init__(self, zk: ZKClient | KazooClient) -> None:
        self.kz = zk.client if isinstance(zk, ZKClient) else zk
        self._reported: set[str] = set()
        self._report_lock = threading.Lock()

    def _unreadable(self, path: str, error: Exception) -> None:
        with self._report_lock:
            if path in self._reported:
                return
            self._reported.add(path)
        log.error("%s holds an unreadable record (%s: %s); skipping it", path, type(error).__name__, error)

    def _decode(self, cls, path: str, raw: bytes):
        try:
            record = cls.from_bytes(raw)
            if not isinstance(record, cls):
                raise TypeError("not a record")
            return record
        except _READ_ERRORS as e:
            self._unreadable(path, e)
            raise UnreadableRecord(f"{path}: {type(e).__name__}: {e}") from None

    # -- image builds ----------------------------------------------------------------------------------------
    def image_builds(self, image: str, provider: str) -> list[ImageBuild]:
        """Builds of one image on one provider, oldest first."""
        out = []
        for name in sorted(self._children(paths.image_build(image, provider))):
            try:
                raw, _ = self.kz.get(paths.image_build(image, provider, name))
                build = self._decode(ImageBuild, paths.image_build(image, provider, name), raw)
            except (NoNodeError, UnreadableRecord):
                continue
            build.id = name
            out.append(build)
        return out

    def write_image_build(self, build: ImageBuild) -> None:
        path = paths.image_build(build.image, build.provider, build.id)
        try:
            self.kz.set(path, build.to_bytes())
        except NoNodeError:
            self.kz.create(path, build.to_bytes(), makepath=True)

    def mark_image_build(self, image: str, provider: str, build_id: str, state: str, reason: str) -> bool:
        """Set an image build's state (with a reason); False if there is no such build."""
        for build in self.image_builds(image, provider):
            if build.id == build_id:
                build.set_state(state)
                build.reason = reason
                self.write_image_build(build)
                return True
        return False

    def delete_image_build(self, build: ImageBuild) -> None:
        try:
            self.kz.delete(paths.image_build(build.image, build.provider, build.id))
        except NoNodeError:
            pass

    def request_image_build(self, image: str, provider: str = "", by: str = "") -> None:
        """Ask for a new build of `image` (on `provider`, or every provider that has it) now, whatever its age.
        A request is met by any build started after it, so it needs no removal; the builders are woken."""
        data = json.dumps({"requested": time.time(), "by": by}).encode()
        path = paths.image_build_request(image, provider)
        try:
            self.kz.set(path, data)
        except NoNodeError:
            self.kz.create(path, data, makepath=True)
        try:
            self.kz.set(paths.IMAGE_BUILD_REQUESTS, data)  # the builders watch this znode
        except NoNodeError:
            self.kz.create(paths.IMAGE_BUILD_REQUESTS, data, makepath=True)

    def image_build_requested(self, image: str, provider: str) -> float:
        """When a new build of `image` on `provider` was last asked for (0.0: never)."""
        latest = 0.0
        for path in (paths.image_build_request(image), paths.image_build_request(image, provider)):
            try:
                raw, _ = self.kz.get(path)
                latest = max(latest, float(json.loads(raw or b"{}").get("requested", 0.0)))
            except NoNodeError:
                continue
            except _READ_ERRORS as e:
                self._unreadable(path, e)
        return latest

    def retire_image_build(self, image: str, provider: str, build_id: str, by: str = "") -> bool:
        """An operator's delete of one build: it is never booted again, and cleanup deletes its cloud image once
        no node uses it. False if there is no such build. The builders are woken to fall back or rebuild."""
        done = self.mark_image_build(image, provider, build_id, IMAGE_DELETING,
                                     f"deleted by an operator{' (' + by + ')' if by else ''}")
        if done:
            data = json.dumps({"retired": time.time(), "by": by}).encode()
            try:
                self.kz.set(paths.IMAGE_BUILD_REQUESTS, data)
            except NoNodeError:
                self.kz.create(paths.IMAGE_BUILD_REQUESTS, data, makepath=True)
        return done

    def watch_image_build_requests(self, callback: Callable[[], None]) -> None:
        """Call `callback()` whenever an operator asks for an image build or deletes one."""
        DataWatch(self.kz, paths.IMAGE_BUILD_REQUESTS, lambda data, stat: callback())

    # -- providers -------------------------------------------------------------------------------------------
    def register_provider(self, name: str, launcher: str, labels: list[str]) -> None:
        """Announce a provider live (ephemeral: it goes with the launcher's session)."""
        data = json.dumps({"launcher": launcher, "labels": sorted(labels)}).encode()
        try:
            self.kz.create(paths.launcher(name), data, ephemeral=True, makepath=True)
        except NodeExistsError:
            self.kz.set(paths.launcher(name), data)

    def unregister_provider(self, name: str) -> None:
        try:
            self.kz.delete(paths.launcher(name))
        except NoNodeError:
            pass

    def live_provider_labels(self, name: str) -> set[str] | None:
        try:
            raw, _ = self.kz.get(paths.launcher(name))
            return set(json.loads(raw or b"{}").get("labels", []))
        except (NoNodeError, *_READ_ERRORS):
            return None

    def provider_state(self, name: str, watch: Callable | None = None) -> ProviderState:
        """The operators' state of a provider (not drained if never set)."""
        path = paths.provider_state(name)
        try:
            raw, _ = self.kz.get(path, watch=watch)
        except NoNodeError:
            if watch is not None and self.kz.exists(path, watch=watch) is not None:
                return self.provider_state(name, watch)
            return ProviderState(name=name)
        try:
            return self._decode(ProviderState, path, raw)
        except UnreadableRecord:
            return ProviderState(name=name)

    def watch_provider_state(self, name: str, callback: Callable[[ProviderState], None]) -> None:
        """Call `callback(state)` now and on every change of the provider's operator state (until it returns False)."""
        path = paths.provider_state(name)

        def changed(data, stat) -> bool | None:
            state = ProviderState(name=name)
            if data:
                try:
                    state = self._decode(ProviderState, path, data)
                except UnreadableRecord:
                    pass
            return callback(state)

        DataWatch(self.kz, path, changed)

    def set_drained(self, name: str, drained: bool, reason: str = "") -> ProviderState:
        state = ProviderState(name=name, drained=drained, drain_reason=reason if drained else "",
                              drained_at=time.time() if drained else 0.0)
        path = paths.provider_state(name)
        try:
            self.kz.set(path, state.to_bytes())
        except NoNodeError:
            self.kz.create(path, state.to_bytes(), makepath=True)
        return state

    def publish_health(self, name: str, status: dict) -> None:
        path = paths.provider_health(name)
        data = json.dumps(status).encode()
        try:
            self.kz.set(path, data)
        except NoNodeError:
            self.kz.create(path, data, makepath=True)

    def image_names(self) -> list[str]:
        """Every image that has builds recorded, on any provider."""
        return sorted(self._children(paths.IMAGES))

    def live_provider_names(self) -> list[str]:
        return self._children(paths.LAUNCHERS)

    def provider_names(self) -> list[str]:
        return sorted(set(self._children(paths.PROVIDERS)) | set(self._children(paths.LAUNCHERS)))

    def provider_health(self, name: str) -> dict:
        try:
            raw, _ = self.kz.get(paths.provider_health(name))
            data = json.loads(raw)
            return data if isinstance(data, dict) else {}
        except (NoNodeError, *_READ_ERRORS):
            return {}

    def _children(self, path: str) -> list[str]:
        try:
            return self.kz.get_children(path)
        except NoNodeError:
            return []


def providers_status(zk: ZKClient) -> list[dict]:
    """Every known provider's health and operator state, JSON-able (for `gatekeeper providers` and the web)."""
    store = ProviderStore(zk)
    live = set(store.live_provider_names())
    out = []
    for name in store.provider_names():
        state = store.provider_state(name)
        health = store.provider_health(name)
        out.append({"name": name, "live": name in live, "drained": state.drained,
                    "drain_reason": state.drain_reason, **{k: v for k, v in health.items() if k != "name"}})
    return out
