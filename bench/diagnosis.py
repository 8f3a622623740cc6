#!/usr/bin/env python3
"""Diagnosis benchmark: failed builds classed, summarised and matched to known bugs; a broken provider caught; the
ETA of a gate queue measured against what happens.

- classification and known bugs: builds of the devstack stand-in run by the executor's build runner
  (gatekeeper.executor.build.BuildRunner: real SSH to sshd hosts, real git workspaces, log collection, diagnosis)
  with one injected cause each, in turn: none (passes); the change breaks an exercise; a service fails to start
  (it cannot reach the message queue: a known bug in the layout); the node vanishes mid-job; the SSH connection
  drops (the job's sshd session is killed); the image is gone (the node source fails as the launcher does when the
  cloud lost the image); a fetch in a step cannot resolve its host; the known intermittent vif-plugging bug.
  `classified_correct_pct`: builds whose failure class is the cause's (a passing build: no class);
  `infra_negative_votes`: builds with an infrastructure cause whose result is not NODE_FAILURE or ERROR (the
  results the scheduler retries and never votes against); `signature_matched_pct`: builds whose known bug was
  named, of those with one; `signature_false_matches`: signatures named for a build whose cause was another.
- provider outliers: builds on three providers (nodes labelled cloud-a, cloud-b, cloud-c), where cloud-b's servers
  are broken (no /dev/kvm: n-cpu cannot start there) and every provider sees the same mix of ordinary failures;
  each finished job feeds gatekeeper.stats.outliers.ProviderOutliers. `outlier_flagged_after_builds`: finished
  builds until cloud-b is flagged (-1: never); `healthy_flagged`: builds at which another provider was flagged.
- ETA: simulated gates of 30 changes with known pass rates and job durations, played out (20 times, 5 with
  --quick, each with its own draws); every 5 minutes of gate time, gatekeeper.stats.eta predicts each queued
  item's time to merge (p50) from what is known then (jobs running and their elapsed time, jobs finished and
  their outcome).  `eta_median_abs_error_pct`: median of |predicted - actual merge time| as a share of the
  item's whole time in the gate, over the predictions for items that merged at least a minute later;
  `eta_of_remaining_median_abs_error_pct`: the same error as a share of the time that was left (harsher near the
  end); `eta_at_enqueue_median_abs_error_pct`: the predictions made when the gate started only.
  The play-out uses the same queue model as the predictor (jobs in parallel, resets from failures ahead): it
  measures how far outcomes spread around the prediction, not how faithful the model is
  to the scheduler.

Every figure counts only work that was done: each build requested must come back once, run by the executor's
build runner (its console archived in the log store names the build, the node it ran on and the steps it
started, and ends with the result the build reports), a build of the control cause ("none") must pass, and every
failed build must carry the failure class and summary the executor wrote on its console. When one does not, the
benchmark says which and why and exits 1. `--self-check` breaks the work on purpose (a classifier that returns
nothing, an executor that runs nothing, one that reports success for a failed build, one that loses a build) and
exits 0 only when each is refused and an unbroken run of every cause is not.

Prints a human summary, then one JSON line. `--quick` finishes in under 120 s on 2 cores.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.selfcheck import finish  # noqa: E402
from gatekeeper.config.layout import parse_layout  # noqa: E402
from gatekeeper.executor import diagnosis, logs  # noqa: E402
from gatekeeper.executor.build import BuildRunner, ExecutorSettings  # noqa: E402
from gatekeeper.executor.console import ConsoleRegistry  # noqa: E402
from gatekeeper.executor.nodes import FixedNodes, NoNode  # noqa: E402
from gatekeeper.executor.workspace import GitCache  # noqa: E402
from gatekeeper.launcher.model import Node  # noqa: E402
from gatekeeper.sim.devstack import (  # noqa: E402
    BROKEN_NOVA_COMPUTE,
    BROKEN_SERVER_MARKER,
    FAULT_FLAKY_BUG,
    FAULT_SERVICE_FAIL,
    seed_devstack,
    seed_nova,
)
from gatekeeper.sim.openstack.hosts import HostSpec, default_backend  # noqa: E402
from gatekeeper.stats.eta import ItemModel, JobModel, queue_etas  # noqa: E402
from gatekeeper.stats.outliers import ProviderOutliers  # noqa: E402
from gatekeeper.zk.builds import (  # noqa: E402
    CHANGE,
    FAILURE_CLASSES,
    INFRASTRUCTURE,
    RESULTS,
    RETRYABLE,
    SUCCESS,
    BuildRequest,
    BuildResult,
)
from tests.functional.test_executor import Projects  # noqa: E402
from tests.layouts import GATE_LAYOUT  # noqa: E402

SIGNATURES = r"""
signatures:
  - id: 1234
    title: n-cpu times out waiting for vif plugging
    url: https://bugs.example.com/1234
    pattern: 'Timeout waiting for vif plugging callback'
    files: screen-n-cpu.log
  - id: 2345
    title: the message queue is unreachable
    pattern: 'AMQP server on \S+ is unreachable'
    files: 'screen-*.log'
  - id: 3456
    title: keystone token expired mid-run
    pattern: 'The request you have made requires authentication'
  - id: 4567
    title: tempest cannot reach the server over SSH
    pattern: '^tempest\..*SSHTimeout'
"""
LOCALRC = {"ADMIN_PASSWORD": "bench-admin", "ENABLED_SERVICES": "key,n-cpu", "SCREEN_LOGDIR": "logs",
           "LOGFILE": "logs/stack.sh.log"}
COLLECT = ["logs/screen-*.log", "logs/stack.sh.log"]
DROP_SSH = ('p=$$; while [ "$p" -gt 1 ]; do [ "$(cat /proc/$p/comm)" = sshd ] && { echo dropping; kill -9 "$p"; '
            'sleep 5; exit 0; }; p=$(cut -d" " -f4 /proc/$p/stat); done; echo no sshd; exit 0')


class BenchFailure(Exception):
    """The work the benchmark measured was not done (so its figures would mean nothing)."""


@dataclass(frozen=True)
class Cause:
    name: str
    failure_class: str  # what the build must be classed as ("" for a pass)
    signature: str = ""  # the known bug it must match


CAUSES = (
    Cause("none", ""),
    Cause("exercise", CHANGE),
    Cause("service", CHANGE, "2345"),
    Cause("vanish", INFRASTRUCTURE),
    Cause("ssh", INFRASTRUCTURE),
    Cause("image", INFRASTRUCTURE),
    Cause("fetch", INFRASTRUCTURE),
    Cause("flaky", CHANGE, "1234"),
)


IMAGE_GONE = ("provider cloud-c: the server could not boot: image 'bench-jammy' is gone from the cloud "
              "(404 Image not found)")


class Pool(FixedNodes):
    """sshd hosts labelled with providers; a host that vanished is replaced; a build whose cause is "image" gets
    the launcher's error for an image the cloud lost."""

    def __init__(self, root: str, providers: tuple[str, ...], per_provider: int, broken: str = "") -> None:
        os.makedirs(root, exist_ok=True)
        key = os.path.join(root, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        with open(key + ".pub") as f:
            self.pubkey = f.read()
        self.key = key
        self.backend = default_backend(os.path.join(root, "hosts"))
        self.broken = broken
        self.providers = providers
        self.count = 0
        self.image_gone: set[str] = set()
        super().__init__([self.boot(p) for p in providers for _ in range(per_provider)])

    def boot(self, provider: str) -> Node:
        self.count += 1
        server_id = f"srv{self.count}"
        address = self.backend.boot(HostSpec(server_id, f"node-{self.count}", authorized_keys=self.pubkey))
        host = self.backend.hosts[server_id]
        with open(os.path.join(host.workdir, "ssh_host_ed25519_key.pub")) as f:
            host_key = " ".join(f.read().split()[:2])
        if provider == self.broken:
            with open(os.path.join(host.home, BROKEN_SERVER_MARKER), "w") as f:
                f.write("no /dev/kvm\n")
        return Node(id=f"{self.count:010d}", provider=provider, label="bench", address=address, port=host.port,
                    username=os.environ.get("USER") or "root", private_key=self.key, host_keys=[host_key],
                    external_id=server_id)

    def acquire(self, label, priority, requestor, abort, timeout=600.0, avoid=()) -> Node:
        if requestor.rsplit(" ", 1)[-1] in self.image_gone:
            raise NoNode(IMAGE_GONE)
        return super().acquire(label, priority, requestor, abort, timeout, avoid)

    def release(self, node: Node, held: bool = False, reason: str = "", hold_hours: float = 24.0,
                change: str = "", owner: str = "") -> None:
        if node.external_id not in self.backend.hosts:  # it vanished: a new server takes its place
            node = self.boot(node.provider)
        else:  # a used server comes back as a fresh one would: the last build's services stop with their dirs
            home = self.backend.hosts[node.external_id].home
            for name in ("data", "logs", "workspace", "syslog"):
                path = os.path.join(home, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                elif os.path.isfile(path):
                    os.unlink(path)
        super().release(node, False, "", hold_hours)

    def destroy(self, node_id: str) -> None:
        """The server under a node disappears (as when its cloud loses it)."""
        server_id = f"srv{int(node_id)}"
        if server_id in self.backend.hosts:
            self.backend.destroy(server_id)

    def close(self) -> None:
        self.backend.close()


class Bench:
    def __init__(self, root: str, pool: Pool, concurrency: int) -> None:
        self.root = root
        self.pool = pool
        self.concurrency = concurrency
        self.projects = Projects(os.path.join(root, "gerrit"))
        seed_devstack(self.projects.path("openstack-dev/devstack"))
        seed_nova(self.projects.path("openstack/nova"))
        self.broken = self.projects.change("openstack/nova", {"nova/compute.py": (BROKEN_NOVA_COMPUTE, False)},
                                           "Break boot", 1)
        signatures = list(parse_layout({"layout.yaml": GATE_LAYOUT, "signatures.yaml": SIGNATURES}).signatures.values())
        self.consoles = ConsoleRegistry()
        self.store = logs.LogStore(os.path.join(root, "logstore"), "http://logs.example.com")
        self.runner = BuildRunner(ExecutorSettings(work_dir=os.path.join(root, "builds"), max_held=0),
                                  GitCache(os.path.join(root, "cache"), self.projects.path), pool, self.store,
                                  self.consoles, "bench-executor", signatures=lambda: signatures)
        self._vanish: set[str] = set()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def request(self, cause: str, number: int) -> BuildRequest:
        localrc = dict(LOCALRC)
        run = ["./stack.sh", "./exercise.sh"]
        state = self.projects.state(self.broken) if cause == "exercise" else self.projects.state()
        if cause == "service":
            localrc[FAULT_SERVICE_FAIL] = "key"
        elif cause == "flaky":
            localrc[FAULT_FLAKY_BUG] = "1"
        elif cause == "vanish":
            run = ["./stack.sh", "echo vanishing; sleep 60"]
        elif cause == "ssh":
            run = ["./stack.sh", DROP_SSH]
        elif cause == "fetch":
            run = ["./stack.sh", "echo 'Cloning into requirements...'; echo 'fatal: unable to access "
                                 "https://opendev.org/openstack/requirements/: Could not resolve host: opendev.org'; "
                                 "exit 128"]
        request = BuildRequest(
            pipeline="check", job="devstack", label="bench", changes=f"{number},1",
            change={"project": "openstack/nova", "branch": "master", "number": number, "patchset": 1},
            repo_state=state.to_dict(), attempts=1,
            params={"run": run, "timeout": 120, "collect": COLLECT, "devstack": {"localrc": localrc}})
        if cause == "image":
            self.pool.image_gone.add(request.id)
        if cause == "vanish":
            self._vanish.add(request.id)
        return request

    def _watch(self) -> None:
        """Destroys the node of a "vanish" build once its job prints that it is about to vanish."""
        while not self._stop.is_set():
            for build_id in list(self._vanish):
                console = self.consoles.get(build_id)
                try:
                    text = open(console.path).read() if console else ""
                except OSError:
                    continue
                if "| vanishing" in text and "NODE_ID=" in text:
                    node_id = text.split("NODE_ID=", 1)[1].split("\n", 1)[0]
                    self.pool.destroy(node_id)
                    self._vanish.discard(build_id)
            self._stop.wait(0.05)

    def run(self, causes: list[str], on_result: Callable | None = None) -> list[tuple[str, BuildResult]]:
        """Run a build per cause; raises BenchFailure when a build was not run and diagnosed as it must be."""
        results: list[tuple[str, BuildResult]] = []
        problems: list[str] = []
        lock = threading.Lock()

        def one(i: int, cause: str) -> None:
            request = self.request(cause, 100 + i)
            try:
                result = self.runner.run(request)
            except Exception as exc:
                with lock:
                    problems.append(f"build {request.id} ({cause}): the build runner raised {type(exc).__name__}: "
                                    f"{exc}")
                return
            wrong = self.check(cause, request, result)
            with lock:
                problems.extend(f"build {request.id} ({cause}): {w}" for w in wrong)
                results.append((cause, result))
                if on_result and not wrong:
                    on_result(cause, result, len(results))

        with ThreadPoolExecutor(self.concurrency) as pool:
            for future in [pool.submit(one, i, c) for i, c in enumerate(causes)]:
                future.result()
        copies = Counter(r.id for _, r in results)
        problems += [f"build {b}: {n} results came back for it" for b, n in copies.items() if n > 1]
        if len(results) != len(causes):
            problems.insert(0, f"{len(causes) - len(results)} of {len(causes)} builds returned no result")
        if problems:
            raise BenchFailure(f"{len(problems)} problem(s) with {len(causes)} builds: " + "; ".join(problems[:3]))
        return results

    def check(self, cause: str, request: BuildRequest, result: BuildResult) -> list[str]:
        """What shows that this build was not run by the build runner or not diagnosed (empty: it was)."""
        if result.id != request.id:
            return [f"the result is for build {result.id!r}"]
        if result.result not in RESULTS:
            return [f"its result {result.result!r} is none of {', '.join(RESULTS)}"]
        change = request.change
        relpath = self.store.build_path(change["number"], change["patchset"], request.pipeline, request.job,
                                        request.id)
        if result.log_url != f"{self.store.url}/{relpath}/":
            return [f"its logs were not archived (log URL {result.log_url!r})"]
        lines = archived_console(self.store.local_path(relpath))
        if lines is None:
            return [f"no console in its archived logs ({self.store.local_path(relpath)})"]
        wrong = []
        finished = [line.rsplit(": ", 1)[-1] for line in lines if f"Build {request.id} finished: " in line]
        if not finished or finished[-1] != result.result:
            wrong.append(f"it reports {result.result} but its console ends with "
                         f"{finished[-1] if finished else 'no result'}")
        if cause == "image":
            if not any(IMAGE_GONE in line for line in lines):
                wrong.append("its console does not show the node source's error (the image gone)")
        else:
            if result.node.get("provider") not in self.pool.providers:
                wrong.append(f"it names no node of the pool (node {result.node})")
            if not any(line.endswith(f"| BUILD_ID={request.id}") for line in lines):
                wrong.append("its console has no header for it (it did not start on a node)")
            first = request.params["run"][0]
            if not any(line.endswith(f"| $ {first}") for line in lines):
                wrong.append(f"its console shows no step run ({first})")
        if cause == "none" and result.node.get("provider") != self.pool.broken:  # a broken provider fails it
            if result.result != SUCCESS:
                wrong.append(f"the control build (nothing broken) ended {result.result}: {result.message}")
            for step in request.params["run"]:
                if not any(f"| {step} exited 0 after " in line for line in lines):
                    wrong.append(f"its console does not show {step} passing")
        elif result.result != SUCCESS:
            if result.failure_class not in FAILURE_CLASSES:
                wrong.append(f"it failed ({result.result}) and carries no failure class ({result.failure_class!r})")
            elif not any(line.endswith(f"| Failure class: {result.failure_class}") or
                         f"| Failure class: {result.failure_class}; " in line for line in lines):
                wrong.append(f"its class {result.failure_class} is not the one the executor wrote on its console")
            if not result.summary.strip():
                wrong.append(f"it failed ({result.result}) and carries no summary")
        return wrong

    def stop(self) -> None:
        self._stop.set()
        self._watcher.join(5)
        self.store.flush()
        self.store.close()


def archived_console(log_dir: str) -> list[str] | None:
    """The lines of a build's console in the log store (gzipped once the store compressed it), or None."""
    for name, opener in (("console.txt", open), ("console.txt.gz", gzip.open)):
        try:
            with opener(os.path.join(log_dir, name), "rt", errors="replace") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            continue
    return None


def classification(results: list[tuple[str, BuildResult]]) -> dict:
    by_name = {c.name: c for c in CAUSES}
    correct = infra_negative = expected_sigs = matched = false = 0
    wrong: Counter = Counter()
    for cause_name, r in results:
        cause = by_name[cause_name]
        ok = r.failure_class == cause.failure_class and (r.result == SUCCESS) == (cause.failure_class == "")
        correct += ok
        if not ok:
            wrong[f"{cause_name}->{r.failure_class or r.result}"] += 1
        if cause.failure_class == INFRASTRUCTURE and r.result not in RETRYABLE:
            infra_negative += 1
        got = {s["id"] for s in r.signatures}
        if cause.signature:
            expected_sigs += 1
            matched += cause.signature in got
            if cause.signature not in got:
                wrong[f"{cause_name}: bug {cause.signature} not named"] += 1
        false += len(got - {cause.signature})
    return {
        "builds": len(results),
        "classified_correct_pct": round(100.0 * correct / max(1, len(results)), 1),
        "infra_negative_votes": infra_negative,
        "signature_matched_pct": round(100.0 * matched / max(1, expected_sigs), 1),
        "signature_false_matches": false,
        "misclassified": dict(wrong),
    }


def outlier_phase(bench: Bench, builds: int, seed: int) -> dict:
    """Every provider sees the same mix (most builds pass, some break an exercise); cloud-b's servers are broken."""
    rng = random.Random(seed)
    causes = ["exercise" if rng.random() < 0.1 else "none" for _ in range(builds)]
    detector = ProviderOutliers(min_builds=8)
    flagged_at: list[int] = []
    healthy: list[int] = []
    per_provider: Counter = Counter()

    def seen(cause: str, result: BuildResult, n: int) -> None:
        if result.failure_class == INFRASTRUCTURE:
            return  # retried, and not a job failure
        provider = result.node.get("provider", "")
        per_provider[provider] += 1
        detector.add(provider, result.result != SUCCESS)
        for rate in detector.outliers():
            if rate.provider == "cloud-b" and not flagged_at:
                flagged_at.append(n)
                print(f"  after {n} builds: {rate.describe()}")
            elif rate.provider != "cloud-b":
                healthy.append(n)

    bench.run(causes, seen)
    return {"outlier_flagged_after_builds": flagged_at[0] if flagged_at else -1, "healthy_flagged": len(healthy),
            "outlier_builds_per_provider": dict(per_provider)}


def play_out(queue: list[ItemModel], rng: random.Random) -> tuple[list[list], list[float | None]]:
    """One gate, played out: each item's runs (start, [(duration, passed) per job]) and its merge time (or None).

    Jobs of an item run in parallel; an item merges once it passed and the items ahead merged or were removed; a
    failure, known when the failing item's jobs end, restarts every item behind it that started before then."""
    n = len(queue)
    runs: list[list] = [[] for _ in range(n)]

    def draw(i: int, start: float) -> None:
        runs[i].append((start, [(rng.choice(j.durations), rng.random() < j.pass_rate) for j in queue[i].jobs]))

    for i in range(n):
        draw(i, 0.0)
    merged: list[float | None] = [None] * n
    last = 0.0
    for i in range(n):
        start, jobs = runs[i][-1]
        done = start + max(d for d, _ in jobs)
        if all(ok for _, ok in jobs):
            merged[i] = last = max(done, last)
            continue
        for j in range(i + 1, n):
            if runs[j][-1][0] < done:
                draw(j, done)
    return runs, merged


def known_at(queue: list[ItemModel], runs: list[list], merged: list[float | None], t: float,
             ) -> tuple[list[int], list[ItemModel]]:
    """What the scheduler knows at `t`: the items still queued, each job running (with its elapsed time) or
    finished (with its outcome)."""
    idx, items = [], []
    for i, item in enumerate(queue):
        current = [r for r in runs[i] if r[0] <= t][-1]
        start, jobs = current
        done = start + max(d for d, _ in jobs)
        if (merged[i] is not None and merged[i] <= t) or (current is runs[i][-1] and merged[i] is None and done <= t):
            continue  # merged, or failed and removed
        elapsed = t - start
        models = [JobModel([d], 1.0 if ok else 0.0, elapsed) if d <= elapsed else JobModel(j.durations, j.pass_rate,
                                                                                             elapsed)
                  for (d, ok), j in zip(jobs, item.jobs, strict=True)]
        idx.append(i)
        items.append(ItemModel(models))
    return idx, items


def eta_phase(items: int, runs: int, seed: int, every: float = 300.0) -> dict:
    """Play out gates of `items` changes; every `every` seconds of gate time, predict each queued item's time to
    merge from what is known then, and compare with when it merged (items that merged, a minute or more ahead)."""
    rng = random.Random(seed)
    durations = [max(60.0, rng.gauss(600.0, 60.0)) for _ in range(200)]  # one job's history: ~10 min
    short = [max(30.0, rng.gauss(300.0, 40.0)) for _ in range(200)]
    queue = [ItemModel([JobModel(durations, rng.uniform(0.9, 1.0)), JobModel(short, rng.uniform(0.95, 1.0))])
             for _ in range(items)]
    errors, of_remaining, first = [], [], []
    for r in range(runs):
        history, merged = play_out(queue, random.Random(seed * 1000 + r + 1))
        end = max((m for m in merged if m is not None), default=0.0)
        t = 0.0
        while t < end:
            idx, known = known_at(queue, history, merged, t)
            for i, eta in zip(idx, queue_etas(known, simulations=200, seed=r), strict=True):
                actual = merged[i] - t if merged[i] is not None else None
                if actual is None or actual < 60.0 or eta.p50 is None:
                    continue
                errors.append(abs(eta.p50 - actual) / merged[i])  # of the item's whole time in the gate
                of_remaining.append(abs(eta.p50 - actual) / actual)
                if t == 0.0:
                    first.append(errors[-1])
            t += every
    if not errors or not first:
        raise BenchFailure(f"ETA: no prediction could be compared with a merge ({runs} gates of {items} items)")
    return {"eta_median_abs_error_pct": round(100.0 * statistics.median(errors), 1),
            "eta_at_enqueue_median_abs_error_pct": round(100.0 * statistics.median(first), 1),
            "eta_of_remaining_median_abs_error_pct": round(100.0 * statistics.median(of_remaining), 1),
            "eta_items": items, "eta_runs": runs, "eta_observations": len(errors)}


# -- --self-check: the work broken on purpose -------------------------------------------------------------------
def _no_diagnosis(console_path: str, log_dir: str, result: str, *args, **kwargs) -> diagnosis.Diagnosis:  # noqa: ANN002, ANN003
    return diagnosis.Diagnosis("", "", [], result)


def _runs_nothing(runner: BuildRunner, request: BuildRequest, *args, **kwargs) -> BuildResult:  # noqa: ANN002, ANN003
    now = time.time()
    return BuildResult(id=request.id, pipeline=request.pipeline, job=request.job, result=SUCCESS,
                       executor=runner.name, start_time=now, end_time=now)


def _reports_success() -> Callable:
    real = BuildRunner.run

    def run(runner: BuildRunner, request: BuildRequest, *args, **kwargs) -> BuildResult:  # noqa: ANN002, ANN003
        result = real(runner, request, *args, **kwargs)
        result.result, result.failure_class, result.summary, result.signatures = SUCCESS, "", "", []
        return result
    return run


def _loses_a_build() -> Callable:
    real, calls, lock = BuildRunner.run, [0], threading.Lock()

    def run(runner: BuildRunner, request: BuildRequest, *args, **kwargs) -> BuildResult:  # noqa: ANN002, ANN003
        with lock:
            calls[0] += 1
            lose = calls[0] == 2
        if lose:
            raise ConnectionResetError("the executor went away")
        return real(runner, request, *args, **kwargs)
    return run


@contextmanager
def sabotage(name: str) -> Iterator[None]:
    if name == "classifier-returns-nothing":
        with mock.patch.object(diagnosis, "diagnose", _no_diagnosis):
            yield
    elif name == "executor-runs-nothing":
        with mock.patch.object(BuildRunner, "run", _runs_nothing):
            yield
    elif name == "executor-reports-success":
        with mock.patch.object(BuildRunner, "run", _reports_success()):
            yield
    elif name == "executor-loses-a-build":
        with mock.patch.object(BuildRunner, "run", _loses_a_build()):
            yield
    else:
        raise ValueError(f"unknown sabotage {name!r}")


SABOTAGES = ("classifier-returns-nothing", "executor-runs-nothing", "executor-reports-success",
             "executor-loses-a-build")


def self_check(root: str) -> list[str]:
    """A build of every cause must pass the checks, and each sabotaged run must be refused; returns what went
    wrong (empty: the benchmark is honest)."""
    missed = []
    pool = Pool(os.path.join(root, "check"), ("cloud-a", "cloud-b", "cloud-c"), 1)
    bench = Bench(os.path.join(root, "check"), pool, 3)
    try:
        try:
            bench.run([c.name for c in CAUSES])
            print(f"self-check: a build of each of the {len(CAUSES)} causes passes the checks")
        except BenchFailure as exc:
            missed.append(f"unbroken: refused although nothing was broken: {exc}")
        for name in SABOTAGES:
            try:
                with sabotage(name):
                    bench.run(["none", "exercise"])
                missed.append(f"{name}: figures were produced")
            except BenchFailure as exc:
                print(f"self-check: {name} caught: {exc}")
    finally:
        bench.stop()
        pool.close()
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer builds (< 120 s on 2 cores)")
    parser.add_argument("--builds", type=int, help="classification builds (default 200; 24 with --quick)")
    parser.add_argument("--outlier-builds", type=int, help="provider-outlier builds (default 60; 30 with --quick)")
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--self-check", action="store_true",
                        help="break the builds' work on purpose and check that the benchmark refuses to report it")
    args = parser.parse_args()
    # the self-check breaks things on purpose: the errors they log are expected there
    logging.basicConfig(level=logging.CRITICAL if args.self_check else logging.WARNING)
    count = args.builds or (24 if args.quick else 200)
    outlier_builds = args.outlier_builds or (30 if args.quick else 60)
    if count < len(CAUSES) or outlier_builds < 6:
        print(f"error: at least {len(CAUSES)} classification builds and 6 outlier builds are needed",
              file=sys.stderr)
        return 2
    root = tempfile.mkdtemp(prefix="gk-bench-diagnosis-")
    if args.self_check:
        try:
            missed = self_check(root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return finish("diagnosis.py", missed)
    started = time.monotonic()
    figures: dict = {}
    try:
        pool = Pool(os.path.join(root, "a"), ("cloud-a", "cloud-b", "cloud-c"), 1)
        bench = Bench(os.path.join(root, "a"), pool, args.concurrency)
        try:
            causes = [CAUSES[i % len(CAUSES)].name for i in range(count)]
            results = bench.run(causes)
        finally:
            bench.stop()
            pool.close()
        figures.update(classification(results))
        print(f"classification: {figures['builds']} builds, {figures['classified_correct_pct']}% classed right "
              f"({figures['misclassified'] or 'none wrong'}), {figures['infra_negative_votes']} infrastructure "
              f"failures that would vote -1, known bugs named {figures['signature_matched_pct']}%, "
              f"{figures['signature_false_matches']} false matches")
        pool = Pool(os.path.join(root, "b"), ("cloud-a", "cloud-b", "cloud-c"), 1, broken="cloud-b")
        bench = Bench(os.path.join(root, "b"), pool, args.concurrency)
        try:
            figures.update(outlier_phase(bench, outlier_builds, args.seed))
        finally:
            bench.stop()
            pool.close()
        print(f"provider outliers: cloud-b flagged after {figures['outlier_flagged_after_builds']} builds; healthy "
              f"providers flagged {figures['healthy_flagged']} times")
        figures.update(eta_phase(30, 5 if args.quick else 20, args.seed))
        print(f"ETA: median error {figures['eta_median_abs_error_pct']}% over {figures['eta_observations']} "
              f"predictions of {figures['eta_items']}-item gates ({figures['eta_of_remaining_median_abs_error_pct']}% "
              f"of the time left; {figures['eta_at_enqueue_median_abs_error_pct']}% for the predictions made when "
              "the gate started)")
    except BenchFailure as exc:
        print(f"bench/diagnosis.py: the measured work was not done, no figures: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    figures["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
