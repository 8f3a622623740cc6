"""Image builds: boot the base image, run the preparation script over SSH, snapshot, delete the template.

One builder thread per provider with images to prepare. A failed build keeps the last good image.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from gatekeeper.launcher.model import IMAGE_GONE, META_BUILD, ImageBuild
from gatekeeper.launcher.provider_manager import META_PROVIDER
from gatekeeper.launcher.sshkeys import ScriptTimeout, run_script, scan_host_keys
from gatekeeper.zk.nodes import NodeStore

log = logging.getLogger("gatekeeper.launcher.images")


def list_builds(kz, image: str, provider: str) -> list[ImageBuild]:
    """Builds of one image on one provider, oldest first."""
    return NodeStore(kz).image_builds(image, provider)


class ImageBuilder:
    def __init__(self, launcher, manager) -> None:
        self.launcher = launcher
        self.manager = manager
        self.store = launcher.store
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._paused: set[str] = set()  # paused images already logged as such
        self._thread = threading.Thread(target=self._run, name=f"images-{manager.name}", daemon=True)

    def start(self) -> None:
        # the watch calls wake() once as it is made: that call is not a request (the first check reads the
        # requests anyway), and left set it would make a second check follow the first at once
        self.store.watch_image_build_requests(self.wake)
        self._wake.clear()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:
                log.exception("provider %s: image check failed", self.manager.name)
            self._wake.wait(self.launcher.image_check_interval)
            self._wake.clear()

    def check(self) -> None:
        for image in self.manager.config.images:
            if not image.prepare or self._stop.is_set():
                continue
            builds = self.store.image_builds(image.name, self.manager.name)
            ready = [b for b in builds if b.state == "ready"]
            while ready and not self._still_there(ready[-1]):
                gone = ready.pop()
                gone.set_state(IMAGE_GONE)
                gone.reason = "the cloud no longer has this image (found by the image check)"
                self.store.write_image_build(gone)
                log.warning("provider %s: image %s build %s is gone from the cloud; falling back to %s",
                            self.manager.name, image.name, gone.id, ready[-1].id if ready else "a new build")
            self._publish(image.name, ready[-1] if ready else None, builds)
            if image.pause:
                if image.name not in self._paused:
                    self._paused.add(image.name)
                    log.info("provider %s: image %s is paused: no new build (%s serves)", self.manager.name,
                             image.name, f"build {ready[-1].id}" if ready else "no build")
                continue
            hours = image.rebuild_hours if image.rebuild_hours is not None else \
                self.manager.config.image_rebuild_hours
            last_attempt = max((b.created for b in builds), default=0.0)
            asked = self.store.image_build_requested(image.name, self.manager.name) > last_attempt
            stale = not ready or (hours > 0 and time.time() - ready[-1].created > hours * 3600)
            # after a failed attempt, wait a rebuild period (or a minute when there is no good image yet), unless
            # an operator asked for a build since
            retry_after = hours * 3600 if ready else min(60.0, hours * 3600 or 60.0)
            if asked:
                log.info("provider %s: image %s: an operator asked for a new build", self.manager.name, image.name)
            if asked or stale and time.time() - last_attempt >= (
                    retry_after if builds and builds[-1].state == "failed" else 0):
                self.build(image)
                builds = self.store.image_builds(image.name, self.manager.name)
                ready = [b for b in builds if b.state == "ready"]
                self._publish(image.name, ready[-1] if ready else None, builds)

    def _publish(self, image: str, ready: ImageBuild | None, builds: list[ImageBuild]) -> None:
        failed = bool(builds) and builds[-1].state == "failed"

        def apply() -> None:
            if ready is not None:
                self.manager.image_builds[image] = (ready.id, ready.external_id)
            else:
                self.manager.image_builds.pop(image, None)
            if failed and ready is None:
                self.manager.image_failed.add(image)
            else:
                self.manager.image_failed.discard(image)
        self.launcher.post(apply)

    def _still_there(self, build: ImageBuild) -> bool:
        """Whether the cloud still has a ready build's image (an API error is not proof that it is gone)."""
        try:
            found = self.manager.adapter.get_image(build.external_id)
        except Exception as e:
            log.warning("provider %s: checking image %s: %s", self.manager.name, build.external_id, e)
            return True
        return found is not None and found.state not in ("killed", "deleted")

    def build(self, image) -> ImageBuild:
        m = self.manager
        build = ImageBuild(id=f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:6]}", image=image.name,
                           provider=m.name)
        self.store.write_image_build(build)
        log.info("provider %s: building image %s (build %s)", m.name, image.name, build.id)
        server_id = ""
        try:
            flavor = m.template_flavor(image.name)
            server_id = m.adapter.create(f"gk-template-{image.name}-{build.id[-6:]}",
                                         image.base_image or image.name, flavor,
                                         {META_BUILD: build.id, META_PROVIDER: m.name},
                                         key_name=m.key_name)
            build.template_id = server_id
            self.store.write_image_build(build)
            info = m.poller.wait_settled(server_id).result(timeout=m.config.launch_timeout)
            if info is None or info.state != "ACTIVE":
                raise RuntimeError(f"template server {server_id} is {info.state if info else 'gone'}: "
                                   f"{info.fault if info else ''}")
            keys = scan_host_keys(info.address, info.port, timeout=m.config.boot_timeout, stop=self._stop)
            try:
                status, output = run_script(info.address, info.port, image.username, self.launcher.ssh_key, keys,
                                            image.prepare, timeout=image.build_timeout, stop=self._stop)
            except ScriptTimeout as e:
                raise RuntimeError(f"prepare script stopped: {e}") from None
            if status != 0:
                raise RuntimeError(f"prepare script exited {status}: {output[-2000:]}")
            image_id = m.adapter.snapshot(server_id, f"gk-{image.name}-{build.id}",
                                          {META_BUILD: build.id, "gatekeeper-image": image.name,
                                           META_PROVIDER: m.name})
            build.external_id = image_id
            self.store.write_image_build(build)
            deadline = time.monotonic() + max(600.0, m.config.boot_timeout)
            while True:
                img = m.adapter.get_image(image_id)
                if img is not None and img.state == "active":
                    break
                if img is None or img.state in ("killed", "deleted") or time.monotonic() > deadline:
                    raise RuntimeError(f"snapshot {image_id} is {img.state if img else 'gone'}")
                if self._stop.wait(0.2):
                    raise RuntimeError("launcher stopping")
            build.set_state("ready")
            log.info("provider %s: image %s build %s ready (%s)", m.name, image.name, build.id, image_id)
        except Exception as e:
            build.set_state("failed")
            build.reason = str(e)[:2000]
            log.warning("provider %s: image %s build %s failed: %s", m.name, image.name, build.id, e)
        finally:
            if server_id:
                m.delete_server(server_id)
            self.store.write_image_build(build)
        return build
