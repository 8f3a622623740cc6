"""A provider as the launcher manages it: its nodes, its quota, and the workers that boot and delete servers."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from gatekeeper.config.layout import Pool, PoolLabel, Provider
from gatekeeper.launcher import model
from gatekeeper.launcher.events import LaunchResult, ServerDeleted
from gatekeeper.launcher.health import ProviderHealth
from gatekeeper.launcher.model import META_NODE, Node
from gatekeeper.launcher.poller import ServerPoller
from gatekeeper.launcher.providers.base import (
    Flavor,
    FlavorNotFound,
    Limits,
    ProviderAdapter,
    ProviderError,
    QuotaError,
)
from gatekeeper.launcher.sshkeys import HostKeyScanError, scan_host_keys

log = logging.getLogger("gatekeeper.launcher.provider_manager")

UNLIMITED = 1 << 30  # no limit configured, or none known
META_LABEL = "gatekeeper-label"  # a server's metadata: the label of the node it was created for
# a server's or image's metadata: the provider that made it, so that providers sharing a cloud project leave each
# other's alone (as Nodepool's nodepool_provider_name)
META_PROVIDER = "gatekeeper-provider"
META_POOL = "gatekeeper-pool"  # a server's metadata: the pool it was launched in


class ProviderManager:
    """Owned by the launcher's main loop: all fields are touched from that thread only, except the workers'
    own arguments; workers report back through `post`."""

    def __init__(self, config: Provider, adapter: ProviderAdapter, *, owner: str, post, stop_event,
                 ssh_key: str, key_name: str, poll_interval: float = 0.2, delete_verify_timeout: float = 30.0,
                 limits_ttl: float = 300.0, disabled: frozenset[str] = frozenset()) -> None:
        self.config = config
        self.disabled = disabled  # labels with min-ready -1: nothing of them is launched
        self.name = config.name
        self.adapter = adapter
        self.owner = owner
        self.post = post
        self.stop_event = stop_event
        self.ssh_key = ssh_key
        self.key_name = key_name
        self.delete_verify_timeout = delete_verify_timeout
        self.limits_ttl = limits_ttl
        self.active = False  # this process holds the provider's lock
        self.nodes: dict[str, tuple[Node, int]] = {}
        self.pool_labels: dict[str, tuple[str, PoolLabel]] = {}  # label -> the first pool offering it
        self.label_pools: dict[str, list[tuple[Pool, PoolLabel]]] = {}  # label -> every pool offering it
        for pool in config.pools:
            for pl in pool.labels:
                self.pool_labels.setdefault(pl.name, (pool.name, pl))
                self.label_pools.setdefault(pl.name, []).append((pool, pl))
        self.pools = {pool.name: pool for pool in config.pools}
        self.host_labels = {label for h in config.hosts for label in h.labels}
        self.poller = ServerPoller(self.name, adapter, poll_interval)
        workers = 128 if config.max_servers is None else max(8, min(128, config.max_servers + 8))
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"provider-{self.name}")
        # The main loop hands launches and deletes to this one thread, which gives them to the pool: starting a
        # pool thread waits until it runs, which takes tens of milliseconds among a burst's busy threads.
        self._dispatch = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"provider-{self.name}-dispatch")
        self._limits: Limits | None = None
        self._limits_at = 0.0
        self._limits_mine = 0
        # a label's flavor (name, min-ram) -> the cloud's flavor it boots, read with the limits; and the ones the
        # cloud has none for -> why (its labels cannot be launched: requests for them are declined)
        self._sizes: dict[tuple[str, int], Flavor] = {}
        self._no_flavor: dict[tuple[str, int], str] = {}
        self._biggest = (0, 0)  # the most cores and RAM of those flavors
        self._foreign_cores = self._foreign_ram = 0  # what servers not ours use of the cores and RAM quota
        self.quota_blocked_until = 0.0
        self.image_builds: dict[str, tuple[str, str]] = {}  # image name -> (build id, cloud image id)
        self.image_failed: set[str] = set()
        self.image_boot_failures = 0  # boots refused because their image was gone (for operators, benchmarks)
        self.deleting: set[str] = set()
        self.public_key = ""
        self.keypair_ready = False
        self._keypair_lock = threading.Lock()
        self._first_create = threading.Lock()  # creates from an image build no server was created from yet
        self._rate_lock = threading.Lock()
        self._next_call = 0.0  # monotonic time before which no create or delete is sent (the provider's rate)
        self._proven_builds: set[str] = set()  # image builds a server was created from (worker threads)
        self._gone_builds: set[str] = set()  # image builds a create found gone from the cloud (worker threads)
        self.health = ProviderHealth(self.name)
        self.drained = False  # by an operator: launch nothing, delete idle ready nodes
        self.published_health: dict | None = None  # what was last written to ZooKeeper
        self.published_at = 0.0

    # -- what it serves --------------------------------------------------------------------------------------
    @property
    def recycles_nodes(self) -> bool:
        return self.adapter.recycles_nodes

    def _unplaced(self, label: str) -> int:
        """Nodes of `label` launched but not yet given a server (the adapter does not count them yet)."""
        return sum(1 for n, _ in self.nodes.values()
                   if n.label == label and n.state == model.BUILDING and not n.external_id)

    def standing_deficit(self) -> list[str]:
        """Labels of always-there servers that have no node yet (one entry per server)."""
        labels = [label for label in self.adapter.standing_labels() if label not in self.disabled]
        for n, _ in self.nodes.values():
            if n.state == model.BUILDING and not n.external_id and n.label in labels:
                labels.remove(n.label)
        return labels

    def pool_label(self, label: str, pool: str | None) -> PoolLabel | None:
        """`label` as the pool named offers it (the first pool offering it when none is named); None for a label
        of no pool (static hosts)."""
        if label not in self.pool_labels:
            return None
        return next((pl for p, pl in self.label_pools[label] if p.name == pool), self.pool_labels[label][1])

    def pool_for(self, label: str) -> str:
        """The pool to launch `label` in: of the pools offering it that have room, the one of the best (lowest)
        priority, then the one with the most room (as Nodepool, any pool that offers a label may launch it, and
        better-priority pools fill first); "" for a label of no pool (static hosts)."""
        options = self.label_pools.get(label)
        if not options:
            return ""
        # never a pool whose flavor the cloud does not have, even while the others are full
        options = [o for o in options if _wanted(o[1]) not in self._no_flavor] or options

        def rank(option: tuple[Pool, PoolLabel]) -> tuple[bool, int, int]:
            room = self._pool_room(*option)
            priority = self.config.priority if option[0].priority is None else option[0].priority
            return room > 0, -priority, room
        return max(options, key=rank)[0].name

    def launch_spec(self, label: str, pool: str | None = None) -> tuple[str, str, str]:
        """(pool, flavor, username) to launch `label` with (in `pool`, or the first pool offering it)."""
        username = self.adapter.username_for(label)
        if label not in self.pool_labels:
            return "", "", username or "root"
        pl = self.pool_label(label, pool)
        size = self._sizes.get(_wanted(pl))
        return pool or self.pool_labels[label][0], size.name if size else pl.flavor, username or pl.username

    def flavor_name(self, pl: PoolLabel) -> str:
        """The cloud's flavor `pl` boots with (worker thread: asks the cloud when it was not read yet). Raises
        ProviderError."""
        size = self._sizes.get(_wanted(pl))
        if size is None and pl.min_ram:
            size = self.adapter.flavor(pl.flavor, pl.min_ram)
        return size.name if size else pl.flavor

    def unlaunchable(self, labels: list[str]) -> list[str]:
        """Why labels of these cannot be launched here, one sentence each: the cloud has no flavor their pools
        ask for (read with the limits)."""
        out = []
        missing = self._no_flavor  # (one snapshot: a refresh replaces the dict)
        for label in dict.fromkeys(labels):
            options = self.label_pools.get(label, [])
            if options and all(_wanted(pl) in missing for _, pl in options):
                out.extend(f'provider {self.name}: label "{label}" (pool {pool.name}): {missing[_wanted(pl)]}'
                           for pool, pl in options)
        return out

    def template_flavor(self, image: str) -> str:
        """The flavor an image's template server boots with: that of the first label booting the image whose
        flavor the cloud has (worker thread). Raises ProviderError, naming each label, when none has one."""
        errors = []
        for pl in (pl for pool in self.config.pools for pl in pool.labels if pl.image == image):
            reason = self._no_flavor.get(_wanted(pl))
            if reason is None:
                try:
                    return self.flavor_name(pl)
                except FlavorNotFound as e:
                    reason = str(e)
            errors.append(f'label "{pl.name}": {reason}')
        if errors:
            raise ProviderError(f"no label booting image {image} has a flavor here: {'; '.join(errors)}")
        return ""

    def can_launch(self) -> bool:
        """Held by us, not drained, and not backing off after boot failures (a probe may be allowed). While its
        last boot failed, one boot at a time: a cloud that fails every boot sees `threshold` boots, not every
        launch a burst started before the breaker opened, and the other providers take the rest."""
        if not (self.active and not self.drained and self.health.allows_launch()):
            return False
        return not (self.health.consecutive and self.booting())

    def booting(self) -> bool:
        """Whether a server of ours is being launched here."""
        return any(n.state == model.BUILDING for n, _ in self.nodes.values())

    def cannot_launch_now(self) -> bool:
        """Drained, or backing off (a question that, unlike can_launch, does not start a probe)."""
        return self.drained or self.health.state == "backing-off"

    def serves(self, label: str) -> bool:
        return label not in self.disabled and (label in self.pool_labels or label in self.host_labels)

    def image_for(self, label: str, pool: str | None = None) -> tuple[str, str, str] | None:
        """(image name, build id, cloud image) to boot `label` from (in `pool`, or the first pool offering it);
        None while its image is not built yet."""
        if label not in self.pool_labels:
            return "", "", ""  # a label of servers that need no image (static hosts)
        pl = self.pool_label(label, pool)
        image = next(i for i in self.config.images if i.name == pl.image)
        if not image.prepare:
            return image.name, "", image.base_image or image.name
        build = self.image_builds.get(image.name)
        if build is None:
            return None
        return image.name, build[0], build[1]

    def image_gone(self, label: str, build_id: str) -> str | None:
        """A boot of `label` from `build_id` found its image gone: forget that upload (the builder falls back to
        the previous good one or rebuilds). Returns the image name when it was the current upload."""
        if label not in self.pool_labels:
            return None
        image = self.pool_labels[label][1].image
        current = self.image_builds.get(image)
        if build_id and current is not None and current[0] == build_id:
            del self.image_builds[image]
            return image
        return None

    def image_unavailable(self, label: str) -> bool:
        """The label's image has no good build and its last build failed: cannot launch it now."""
        if label not in self.pool_labels:
            return False
        _, pl = self.pool_labels[label]
        return pl.image in self.image_failed and pl.image not in self.image_builds

    # -- quota -----------------------------------------------------------------------------------------------
    def count(self, pool: str | None = None) -> int:
        if pool is None:
            return len(self.nodes)
        return sum(1 for n, _ in self.nodes.values() if n.pool == pool)

    def capacity(self) -> int:
        """How many servers in all this provider may have: max-servers, or the cloud's limit if lower (without
        max-servers, the cloud's limit alone)."""
        cap = UNLIMITED if self.config.max_servers is None else self.config.max_servers
        if self._limits is not None:
            foreign = max(0, self._limits.instances_used - self._limits_mine)
            cap = min(cap, self._limits.instances - foreign)
        return max(0, cap)

    def free(self, label: str | None = None) -> int:
        if time.monotonic() < self.quota_blocked_until:
            return 0
        free = self.capacity() - self.count()
        if label and label in self.label_pools:
            free = min(free, sum(max(0, self._pool_room(pool, pl)) for pool, pl in self.label_pools[label]))
        if label:
            known = self.adapter.free_for(label)
            if known is not None:
                free = min(free, known - self._unplaced(label))
        return max(0, free)

    def _size(self, pool: str, label: str) -> Flavor | None:
        """The size of the flavor `label` is launched with in `pool` (None: not known)."""
        options = self.label_pools.get(label)
        if not options:
            return None
        pl = next((pl for p, pl in options if p.name == pool), options[0][1])
        return self._sizes.get(_wanted(pl))

    def _pool_room(self, pool: Pool, pl: PoolLabel) -> int:
        """How many more servers of `pl` the pool holds: its max-servers, and the cores and RAM left of the
        cloud's quota (after the other users' servers and our nodes) and of the pool's max-cores and max-ram, as
        Nodepool weighs quota (not by servers alone)."""
        if _wanted(pl) in self._no_flavor:
            return 0  # the cloud has no flavor it asks for: it never launches there
        room = UNLIMITED if pool.max_servers is None else pool.max_servers - self.count(pool.name)
        size = self._sizes.get(_wanted(pl))
        if size is None:
            return room
        limits, by_pool = self._limits, pool.max_cores is not None or pool.max_ram is not None
        if limits is not None and not by_pool:
            # the common case, without walking every node: when even our largest flavor on every node leaves room
            # for more servers than max-servers or the cloud's server limit allow, cores and RAM do not bind
            cores, ram = self._biggest
            if _fits(size, limits.cores - self._foreign_cores - len(self.nodes) * cores,
                     limits.ram - self._foreign_ram - len(self.nodes) * ram) >= self.capacity():
                return room
        ours = [(n.pool, f) for n, _ in self.nodes.values() if (f := self._size(n.pool, n.label)) is not None]
        if limits is not None:
            room = min(room, _fits(size, limits.cores - self._foreign_cores - sum(f.vcpus for _, f in ours),
                                   limits.ram - self._foreign_ram - sum(f.ram for _, f in ours)))
        if by_pool:
            in_pool = [f for p, f in ours if p == pool.name]
            room = min(room, _fits(size, _less(pool.max_cores, sum(f.vcpus for f in in_pool)),
                                   _less(pool.max_ram, sum(f.ram for f in in_pool))))
        return room

    def can_ever_serve(self, labels: list[str]) -> bool:
        """False when the request is larger than this provider could ever hold at once: more servers than its
        max-servers, the cloud's limit or its pools' max-servers allow, or more cores or RAM than the cloud's
        quota leaves us or a pool's max-cores or max-ram allows."""
        if not all(self.serves(label) for label in labels):
            return False
        if len(labels) > self.capacity():
            return False
        if self.unlaunchable(labels):
            return False  # as Nodepool, whose launcher declines a request whose flavor it cannot find
        # the pools that may launch each label: those whose flavor the cloud has (or that could not be read yet)
        launchable = {x: [(p, pl) for p, pl in self.label_pools.get(x, []) if _wanted(pl) not in self._no_flavor]
                      for x in labels}
        # as Nodepool declines a request its pool's max-servers could never hold: the labels only one pool
        # offers fit in its max-servers together, and all of them in the max-servers of the pools offering them
        room = {p.name: UNLIMITED if p.max_servers is None else p.max_servers for p in self.config.pools}
        by_one = Counter(launchable[x][0][0].name for x in labels if len(launchable[x]) == 1)
        if any(n > room[name] for name, n in by_one.items()):
            return False
        offering = {p.name for x in labels for p, _ in launchable[x]}
        if sum(1 for x in labels if x in self.label_pools) > sum(room[name] for name in offering):
            return False
        options = {label: [(pool, self._sizes.get(_wanted(pl))) for pool, pl in launchable[label]]
                   for label in labels}
        if any(not opts or any(f is None for _, f in opts) for opts in options.values()):
            return True  # (no pool, or a size we could not read: the cloud will say)
        least_cores = sum(min(f.vcpus for _, f in options[label]) for label in labels)
        least_ram = sum(min(f.ram for _, f in options[label]) for label in labels)
        if self._limits is not None and (least_cores > self._limits.cores - self._foreign_cores
                                         or least_ram > self._limits.ram - self._foreign_ram):
            return False
        # each label fits in one of its pools; labels that only one pool offers fit there together
        alone: dict[str, list[Flavor]] = {}
        for label in labels:
            fitting = [(pool, f) for pool, f in options[label] if _less(pool.max_cores, f.vcpus) >= 0
                       and _less(pool.max_ram, f.ram) >= 0]
            if not fitting:
                return False
            if len(options[label]) == 1:
                alone.setdefault(options[label][0][0].name, []).append(options[label][0][1])
        for name, sizes in alone.items():
            pool = self.pools[name]
            if _less(pool.max_cores, sum(f.vcpus for f in sizes)) < 0 or \
                    _less(pool.max_ram, sum(f.ram for f in sizes)) < 0:
                return False
        return True

    def refresh_limits(self) -> None:
        """Read the cloud's limits and the sizes of the labels' flavors (worker thread); cached for limits_ttl,
        and re-read on an over-quota error."""
        try:
            limits = self.adapter.limits()
            ours = {sid: s for sid, s in self.adapter.poll().items() if self.made(s.metadata)}
            # (our servers as the cloud counts them, not as our records do)
        except ProviderError as e:
            log.warning("provider %s: reading limits failed: %s", self.name, e)
            return
        sizes, missing = dict(self._sizes), dict(self._no_flavor)
        if missing:
            self.adapter.forget_flavors()  # a flavor added to the cloud since is found at the next read
        for wanted in {_wanted(pl) for options in self.label_pools.values() for _, pl in options}:
            if wanted[0] or wanted[1]:
                try:
                    sizes[wanted] = self.adapter.flavor(*wanted)
                    missing.pop(wanted, None)
                except FlavorNotFound as e:
                    sizes.pop(wanted, None)
                    if wanted not in missing:
                        log.error("provider %s: labels with flavor %r%s cannot be launched: %s", self.name,
                                  wanted[0], f" and min-ram {wanted[1]}" if wanted[1] else "", e)
                    missing[wanted] = str(e)
                except ProviderError as e:  # its launches will say so; the servers' quota still holds
                    log.warning("provider %s: reading flavor %s: %s", self.name, wanted[0], e)
        self._sizes, self._no_flavor = sizes, missing
        self._biggest = (max((f.vcpus for f in sizes.values()), default=0),
                         max((f.ram for f in sizes.values()), default=0))
        mine = [f for s in ours.values() if (f := self._size(s.metadata.get(META_POOL, ""),
                                                              s.metadata.get(META_LABEL, ""))) is not None]
        self._foreign_cores = max(0, limits.cores_used - sum(f.vcpus for f in mine))
        self._foreign_ram = max(0, limits.ram_used - sum(f.ram for f in mine))
        self._limits, self._limits_at, self._limits_mine = limits, time.monotonic(), len(ours)

    def made(self, metadata: dict) -> bool:
        """Whether a server or image with this metadata is this provider's (one made before providers named
        themselves in it counts as anyone's)."""
        return metadata.get(META_PROVIDER, self.name) == self.name

    # -- workers ---------------------------------------------------------------------------------------------
    def start_launch(self, node: Node, flavor: str, cloud_image: str) -> None:
        self._hand_over(self._launch, node, flavor, cloud_image)

    def _hand_over(self, fn, *args) -> None:
        """Run `fn(*args)` on the pool, without waiting for a pool thread to start (see `_dispatch`)."""
        def submit() -> None:
            try:
                self.pool.submit(fn, *args)
            except RuntimeError:  # stopping
                pass
        try:
            self._dispatch.submit(submit)
        except RuntimeError:
            pass

    def ensure_keypair(self) -> None:
        """Upload the launcher's public key once (retried by the next launch if the cloud failed us)."""
        with self._keypair_lock:
            if self.key_name and not self.keypair_ready:
                self.adapter.ensure_keypair(self.key_name, self.public_key)
                self.keypair_ready = True

    def _await_rate(self) -> bool:
        """Space the cloud calls that create or delete servers `rate` seconds apart (Nodepool's rate; 0: no
        spacing); False if the launcher stops meanwhile."""
        if self.config.rate <= 0:
            return not self.stop_event.is_set()
        with self._rate_lock:
            now = time.monotonic()
            start = max(now, self._next_call)
            self._next_call = start + self.config.rate
        return not self.stop_event.wait(start - now) if start > now else not self.stop_event.is_set()

    def _launch(self, node: Node, flavor: str, cloud_image: str) -> None:
        meta = {META_NODE: node.id, META_LABEL: node.label, META_PROVIDER: self.name, META_POOL: node.pool}
        build = node.image_build
        # Until a server was created from an image build, its creates go one at a time: launches started together
        # (a burst) would otherwise all find a vanished upload gone, where one failure is enough to know it.
        with self._first_create if build and build not in self._proven_builds else contextlib.nullcontext():
            if build and (build in self._gone_builds or self.image_builds.get(node.image, ("",))[0] != build):
                # behind a boot that found this upload gone: do not ask the cloud for it again
                self.post(LaunchResult(node.id, False, error=f"image {node.image} build {build} is gone",
                                       image_missing=True, tried=False))
                return
            try:
                self.ensure_keypair()
                if not self._await_rate():
                    return  # stopping
                pool, pl = self.pools.get(node.pool), self.pool_label(node.label, node.pool)
                if pl is not None:  # (the flavor given was chosen before the sizes may have been read)
                    flavor = self.flavor_name(pl)
                server_id = self.adapter.create(f"gk-{node.label}-{node.id}", cloud_image, flavor, meta,
                                                key_name=self.key_name, networks=pool.networks if pool else (),
                                                userdata=pl.userdata if pl else "")
            except QuotaError as e:
                self.refresh_limits()
                self.post(LaunchResult(node.id, False, error=str(e), quota=True))
                return
            except Exception as e:
                missing = self.adapter.is_missing_image_message(str(e))
                if missing and build:
                    self._gone_builds.add(build)
                self.post(LaunchResult(node.id, False, error=str(e), image_missing=missing))
                return
            if build:
                self._proven_builds.add(build)
        info = self.adapter.ready_now(server_id)
        if info is not None:
            # up already (a static host); a configured host key is pinned without a scan
            pinned = self.adapter.pinned_host_key(server_id)
            if pinned:
                self.post(LaunchResult(node.id, True, server_id, info.address, info.port, [pinned],
                                       username=info.username))
                return
            try:
                keys = scan_host_keys(info.address, info.port,
                                      timeout=self.adapter.scan_timeout(server_id) or self.config.boot_timeout,
                                      stop=self.stop_event)
            except HostKeyScanError as e:
                self.post(LaunchResult(node.id, False, server_id, info.address, error=str(e)))
                return
            self.post(LaunchResult(node.id, True, server_id, info.address, info.port, keys, username=info.username))
            return
        # as Nodepool: launch-timeout bounds the wait for ACTIVE, boot-timeout the wait for SSH after it
        try:
            info = self.poller.wait_settled(server_id).result(timeout=self.config.launch_timeout)
        except Exception:
            info = None
            self.poller.forget(server_id)
            self._log_console(node, server_id)
            self.post(LaunchResult(node.id, False, server_id,
                                   error=f"server {server_id} not ACTIVE within {self.config.launch_timeout}s"))
            return
        if info is None:
            self.post(LaunchResult(node.id, False, server_id, error=f"server {server_id} vanished while booting"))
            return
        if info.state != "ACTIVE":
            quota = self.adapter.is_quota_message(info.fault)
            if quota:
                self.refresh_limits()
            else:
                self._log_console(node, server_id)
            self.post(LaunchResult(node.id, False, server_id, error=f"server {server_id} is {info.state}: "
                                   f"{info.fault or 'no fault given'}", quota=quota,
                                   image_missing=self.adapter.is_missing_image_message(info.fault)))
            return
        try:
            keys = scan_host_keys(info.address, info.port, timeout=self.config.boot_timeout, stop=self.stop_event)
        except HostKeyScanError as e:
            self._log_console(node, server_id)
            self.post(LaunchResult(node.id, False, server_id, info.address, error=str(e)))
            return
        self.post(LaunchResult(node.id, True, server_id, info.address, info.port, keys))

    def _log_console(self, node: Node, server_id: str) -> None:
        """Log the console of a server whose boot failed, when its label asks for it (Nodepool's console-log)."""
        pl = self.pool_label(node.label, node.pool)
        if pl is None or not pl.console_log or self.stop_event.is_set():
            return
        try:
            output = self.adapter.console_log(server_id)
        except Exception as e:  # best effort: never in the way of the launch result that follows (ProviderError,
            # or anything a broken cloud's answer raises)
            log.warning("provider %s: node %s (%s): no console log of server %s: %s", self.name, node.id,
                        node.label, server_id, e)
            return
        log.warning("provider %s: node %s (%s): console log of server %s, whose boot failed:\n%s", self.name,
                    node.id, node.label, server_id, output.rstrip() or "(empty)")

    def start_delete(self, node: Node, on_slow=None) -> None:
        """Delete the node's server and verify it is gone, then post ServerDeleted."""
        if node.id in self.deleting:
            return
        self.deleting.add(node.id)
        self._hand_over(self._delete, node, on_slow)

    def delete_server(self, server_id: str, on_slow=None) -> bool:
        """Delete and verify (re-issuing the delete while the server lingers); True when gone.

        on_slow() is called once if the server is still there after a second."""
        deadline = time.monotonic() + self.delete_verify_timeout * 3
        while time.monotonic() < deadline and self._await_rate():
            try:
                self.adapter.delete(server_id)
            except ProviderError as e:
                log.warning("provider %s: deleting server %s: %s", self.name, server_id, e)
                if self.stop_event.wait(1.0):
                    return False
                continue
            if not self.adapter.boots:
                return True  # nothing to wait for: the server is not destroyed, only given back
            gone = self.poller.wait_gone(server_id)
            if gone.cancelled():
                return False  # the poller has stopped: the launcher is stopping
            try:
                if on_slow is not None:
                    try:
                        if gone.result(timeout=1.0):
                            return True
                    except TimeoutError:
                        on_slow()
                        on_slow = None
                if gone.result(timeout=self.delete_verify_timeout):
                    return True
            except Exception:
                self.poller.forget(server_id)
                log.warning("provider %s: server %s still there %.0fs after delete; deleting again",
                            self.name, server_id, self.delete_verify_timeout)
        return False

    def _delete(self, node: Node, on_slow=None) -> None:
        server_id = node.external_id
        if not server_id and self.adapter.boots:
            # launched by a launcher that died before it learned the server id: find it by our metadata
            try:
                servers = self.adapter.poll()
            except ProviderError:
                servers = {}
            server_id = next((s.id for s in servers.values() if s.metadata.get(META_NODE) == node.id), "")
        ok = True
        if server_id:
            ok = self.delete_server(server_id, on_slow)
        self.post(ServerDeleted(self.name, node.id, ok))

    def stop(self) -> None:
        self.poller.stop()
        self._dispatch.shutdown(wait=False, cancel_futures=True)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.adapter.close()


def _wanted(pl: PoolLabel) -> tuple[str, int]:
    """What a pool label asks of the cloud's flavors: a name (or a part of one, with min-ram) and the least RAM."""
    return pl.flavor, pl.min_ram


def _less(limit: int | None, used: int) -> int:
    """What is left of a limit (None: no limit)."""
    return UNLIMITED if limit is None else limit - used


def _fits(size: Flavor, cores: int, ram: int) -> int:
    """How many servers of a flavor fit in so many cores and so much RAM."""
    return min(cores // size.vcpus if size.vcpus else UNLIMITED, ram // size.ram if size.ram else UNLIMITED)
