"""A new layout for the scheduler: publishing and reading it, refusing a bad one, and removing the pipelines it no
longer has. A mixin of `Scheduler` (gatekeeper.scheduler.scheduler).

A pipeline the layout no longer has goes as in a Zuul reconfiguration: its items leave without a report, their
builds and merges are withdrawn (an executor aborts a withdrawn build and gives back its nodes), their results
are deleted, and the pipeline's state leaves ZooKeeper (so the status page and metrics no longer show it). Every
scheduler takes the new layout from ZooKeeper and forgets what it held of the pipeline; the one that takes the
pipeline's lock removes its state, one log line per item dropped. It does so only while its layout is the one
published, checked under the lock: a scheduler still on an older layout neither removes a pipeline the newer one
added, nor, taking the lock after the removal, starts the removed pipeline again from an empty state.
"""

from __future__ import annotations

import logging

from kazoo.exceptions import NoNodeError

from gatekeeper.config.layout_contents import pipelines_missing
from gatekeeper.config.store import publish_layout, read_layout
from gatekeeper.config.yamlfile import ConfigErrors
from gatekeeper.models.pipeline import PipelineState
from gatekeeper.models.store import PipelineStore, delete_pipeline
from gatekeeper.scheduler.backend import withdraw_requests
from gatekeeper.scheduler.intake import MANAGEMENT, seq
from gatekeeper.scheduler.timer import FIRES
from gatekeeper.zk import paths
from gatekeeper.zk.builds import BUILDS
from gatekeeper.zk.merges import MERGES, MergeState
from gatekeeper.zk.sharding import ShardedReadError

log = logging.getLogger("gatekeeper.scheduler")


class LayoutChanges:
    """Taking a new layout, for Scheduler."""

    def _publish_layout_if_absent(self) -> None:
        """The first scheduler (or the all-in-one) publishes the layout; later ones run what is published."""
        if not self.zk.client.exists(paths.LAYOUT):
            publish_layout(self.zk, self.layout)

    def _on_layout(self, data: bytes | None, stat) -> bool | None:
        if self._stopping.is_set():
            return False
        pointer = (data or b"").decode()
        if not pointer or pointer == self._layout_version:
            return None
        self._layout_version = pointer
        try:
            layout = read_layout(self.zk)
        except (ConfigErrors, ShardedReadError) as exc:
            self._layout_version = ""  # read again at its next change
            log.error("the layout in ZooKeeper does not load (%s); keeping the running one",
                      f"{len(exc.errors)} errors" if isinstance(exc, ConfigErrors) else exc)
            return None
        if layout is None:
            return None
        if layout.files != self.layout.files:
            log.info("layout reloaded: %s", layout.summary())
        self.layout = layout
        self._running_version = pointer  # (not before: while it was read, the old one still ran)
        self._retire_due = True
        self._wake.set()
        if self.timer:  # new schedules, maybe
            self.timer.wake()
        return None

    def reload(self) -> str:
        """Read the layout again (SIGHUP, `gatekeeper reload`); returns "" or its errors, keeping the running one."""
        if self.layout_loader is None:
            return "this scheduler was started without a layout path"
        try:
            layout = self.layout_loader()
            missing = pipelines_missing(layout)
            if missing is not None:  # an emptied file, most likely: taken, it would drop every queued change
                raise ConfigErrors([missing])
        except ConfigErrors as exc:
            errors = "\n".join(str(e) for e in exc.errors)
            log.error("layout reload rejected; keeping the running layout (%s):\n%s", self.layout.summary(), errors)
            return errors
        publish_layout(self.zk, layout)
        self.layout = layout
        self._retire_due = True
        self._wake.set()
        return ""

    def _reload(self, ident: str) -> None:
        self._answer(ident, self.reload())
        for p in self.layout.pipelines:
            self._skipped[(p, MANAGEMENT)] = max(self._skipped.get((p, MANAGEMENT), -1), seq(ident))

    def _layout_current(self) -> bool:
        """Whether this scheduler runs the published layout (its watch has read the latest one)."""
        try:
            pointer, _ = self.zk.client.get(paths.LAYOUT)
        except NoNodeError:
            return False
        return bool(self._running_version) and pointer.decode() == self._running_version

    # -- pipelines the layout no longer has -------------------------------------------------------------------------
    def _retire_removed(self) -> None:
        """Forget, and remove from ZooKeeper, the pipelines the running layout no longer has (see the module's
        docstring); what cannot be done now (a lock held elsewhere, a layout not yet read) is tried again."""
        self._retire_due = False  # set again by a layout read meanwhile (on the watch's thread)
        try:
            self._retire_gone()
        except Exception:
            self._retire_due = True  # (a ZooKeeper error part way: tried again on the next pass)
            raise

    def _retire_gone(self) -> None:
        known = self.layout.pipelines
        for name in [n for n in {*self.states, *self.stores, *self._report_queues} if n not in known]:
            self._forget_pipeline(name)
        results = (*self._merge_results.values(), *self._build_results.values())
        try:
            stored = self.zk.client.get_children(paths.PIPELINES)
        except NoNodeError:
            stored = []
        gone = sorted({*stored, *(r.pipeline for r in results if r.pipeline)} - set(known))
        if not gone:
            return
        if not self._layout_current():
            self._retire_due = True  # the layout watch brings the published layout (and wakes this scheduler)
            return
        if not all([self._retire(name) for name in gone]):
            self._retire_due = True  # a lock held elsewhere: its release wakes this scheduler (a lock watch)

    def _retire(self, name: str) -> bool:
        """Remove pipeline `name` under its lock; False when another scheduler holds it or the layout changed."""
        if not self._acquire(name):
            return False
        try:
            if not self._layout_current():  # under the lock: nobody on the published layout runs `name` now
                return False
            if name in self.layout.pipelines:  # a layout taken meanwhile has it (again): not ours to remove
                return True
            dropped = 0
            if self.zk.client.exists(paths.pipeline_state(name)) is not None:
                dropped = self._drop_items(name, PipelineStore(self.zk.client, name).load(None))
            for cache in (self._merge_results, self._build_results):
                for ident in [i for i, r in cache.items() if r.pipeline == name]:
                    path = (paths.merger_result if cache is self._merge_results else paths.executor_result)(ident)
                    self._results_done[ident] = (path, False)  # deleted with the next applied results
                    del cache[ident]
            if delete_pipeline(self.zk.client, name):
                log.warning("[%s] no longer in the layout: the pipeline's state is removed, %d item(s) dropped",
                            name, dropped)
            try:
                self.zk.client.delete(f"{FIRES}/{name}", recursive=True)
            except NoNodeError:
                pass
        finally:
            # The lock's node stays (empty): other schedulers may hold a kazoo Lock on it, which would break.
            self._release(name)
        self._forget_pipeline(name)
        return True

    def _drop_items(self, name: str, state: PipelineState) -> int:
        """Take every item out without a report, withdrawing its builds and merges: one log line per item."""
        builds, merges = [], []
        for item in state.items.values():
            running = sorted(job for job, b in item.builds.items() if not b.finished)
            builds += [item.builds[job].id for job in running]
            if item.merge_state == MergeState.PENDING and item.merge_id:
                merges.append(item.merge_id)
            log.warning("%s dropped without a report: pipeline %s is no longer in the layout%s", item.label(name),
                        name, f" (builds cancelled: {', '.join(running)})" if running else "")
        withdraw_requests(self.zk, BUILDS, builds)
        withdraw_requests(self.zk, MERGES, merges)
        return len(state.items)

    def _forget_pipeline(self, name: str) -> None:
        """Forget what this scheduler holds of a pipeline its layout no longer has (its lock given back)."""
        if name in self._held:
            self._release(name)
        self.states.pop(name, None)
        self.stores.pop(name, None)
        self._fresh.discard(name)
        self._probed.discard(name)
        self._reports_done.discard(name)
        self._locks.pop(name, None)
        for key in [k for k in self._skipped if k[0] == name]:
            del self._skipped[key]
        reports = self._report_queues.pop(name, None)
        if reports is not None:
            reports.stop()  # what it was sending is no longer reported, as in Zuul
