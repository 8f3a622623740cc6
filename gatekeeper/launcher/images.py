"""Image builds: boot the base image, run the preparation script over SSH, snapshot, delete the template.

One builder thread per provider with images to prepare. A failed build keeps the last good image.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from kazoo.exceptions import NoNodeError

from gatekeeper.launcher import model
from gatekeeper.launcher.model import META_BUILD, ImageBuild
from gatekeeper.launcher.sshkeys import run_script, scan_host_keys
from gatekeeper.zk import paths

log = logging.getLogger("gatekeeper.launcher.images")


def list_builds(kz, image: str, provider: str) -> list[ImageBuild]:
    """Builds of one image on one provider, oldest first."""
    try:
        names = sorted(kz.get_children(paths.image_build(image, provider)))
    except NoNodeError:
        return []
    out = []
    for name in names:
        try:
            raw, _ = kz.get(paths.image_build(image, provider, name))
        except NoNodeError:
            continue
        b = ImageBuild.from_bytes(raw)
        b.id = name
        out.append(b)
    return out


def write_build(kz, build: ImageBuild) -> None:
    path = paths.image_build(build.image, build.provider, build.id)
    if kz.exists(path):
        kz.set(path, build.to_bytes())
    else:
        kz.create(path, build.to_bytes(), makepath=True)


class ImageBuilder:
    def __init__(self, launcher, manager) -> None:
        self.launcher = launcher
        self.manager = manager
        self.kz = launcher.kz
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"images-{manager.name}", daemon=True)

    def start(self) -> None:
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
            builds = list_builds(self.kz, image.name, self.manager.name)
            ready = [b for b in builds if b.state == "ready"]
            self._publish(image.name, ready[-1] if ready else None, builds)
            hours = image.rebuild_hours if image.rebuild_hours is not None else \
                self.manager.config.image_rebuild_hours
            last_attempt = max((b.created for b in builds), default=0.0)
            stale = not ready or (hours > 0 and time.time() - ready[-1].created > hours * 3600)
            # after a failed attempt, wait a rebuild period (or a minute when there is no good image yet)
            retry_after = hours * 3600 if ready else min(60.0, hours * 3600 or 60.0)
            if stale and time.time() - last_attempt >= (retry_after if builds and builds[-1].state == "failed"
                                                        else 0):
                self.build(image)
                builds = list_builds(self.kz, image.name, self.manager.name)
                ready = [b for b in builds if b.state == "ready"]
                self._publish(image.name, ready[-1] if ready else None, builds)

    def _publish(self, image: str, ready: ImageBuild | None, builds: list[ImageBuild]) -> None:
        failed = bool(builds) and builds[-1].state == "failed"

        def apply() -> None:
            if ready is not None:
                self.manager.image_builds[image] = (ready.id, ready.external_id)
            if failed and ready is None:
                self.manager.image_failed.add(image)
            else:
                self.manager.image_failed.discard(image)
        self.launcher._events.put(apply)

    def build(self, image) -> ImageBuild:
        m = self.manager
        build = ImageBuild(id=f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:6]}", image=image.name,
                           provider=m.name)
        write_build(self.kz, build)
        log.info("provider %s: building image %s (build %s)", m.name, image.name, build.id)
        flavor = next((pl.flavor for pool in m.config.pools for pl in pool.labels if pl.image == image.name), "")
        server_id = ""
        try:
            server_id = m.adapter.create(f"gk-template-{image.name}-{build.id[-6:]}",
                                         image.base_image or image.name, flavor, {META_BUILD: build.id},
                                         key_name=m.key_name)
            build.template_id = server_id
            write_build(self.kz, build)
            info = m.poller.wait_settled(server_id).result(timeout=m.config.boot_timeout)
            if info is None or info.state != "ACTIVE":
                raise RuntimeError(f"template server {server_id} is {info.state if info else 'gone'}: "
                                   f"{info.fault if info else ''}")
            keys = scan_host_keys(info.address, info.port, timeout=m.config.boot_timeout, stop=self._stop)
            status, output = run_script(info.address, info.port, image.username, self.launcher.ssh_key, keys,
                                        image.prepare)
            if status != 0:
                raise RuntimeError(f"prepare script exited {status}: {output[-2000:]}")
            image_id = m.adapter.snapshot(server_id, f"gk-{image.name}-{build.id}",
                                          {META_BUILD: build.id, "gatekeeper-image": image.name})
            build.external_id = image_id
            write_build(self.kz, build)
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
            write_build(self.kz, build)
        return build


def current_build_ids(kz, provider: str, images: list[str]) -> dict[str, list[ImageBuild]]:
    return {i: list_builds(kz, i, provider) for i in images}


__all__ = ["ImageBuilder", "list_builds", "model"]
