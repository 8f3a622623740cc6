"""Zuul's job dependencies within one item: which of its jobs may be requested now, and which are skipped.

A job starts once every job it depends on (and that runs for the item) succeeded. When one of them ended otherwise
(failed, timed out, was skipped itself, even a non-voting one), the job never runs: its result is SKIPPED. A soft
dependency on a job the item does not run is ignored; a hard one is an error that runs none of the item's jobs, as
Zuul documents: every job is SKIPPED, naming the job that lacks its dependency, and the item fails (the layout
already refuses a pipeline list without it, so only branch and file matchers get here).
"""

from __future__ import annotations

from collections.abc import Callable

from gatekeeper.config.model import Job, Layout
from gatekeeper.models.pipeline import Build, Item
from gatekeeper.zk.builds import SKIPPED, SUCCESS

WAIT = None  # a job whose dependencies have not all finished yet


def next_jobs(item: Item, layout: Layout | Callable[[str], Job | None]) -> tuple[list[str], dict[str, str]]:
    """The item's jobs without a build that may be requested now, and those to skip, with why (for people)."""
    results = {job: build.result for job, build in item.builds.items()}
    lacking = {job: dep.name for job in item.jobs for dep in _dependencies(job, layout)
               if not dep.soft and dep.name not in item.jobs}
    if lacking:
        first, dep = next(iter(lacking.items()))
        return [], {job: f"its dependency {lacking[job]} does not run for this change" if job in lacking
                    else f"no job runs: job {first} depends on job {dep}, which does not run for this change"
                    for job in item.jobs if job not in results}
    ready: list[str] = []
    skipped: dict[str, str] = {}
    changed = True
    while changed:  # a skip may skip what depends on it in turn
        changed = False
        for job in item.jobs:
            if job in results:
                continue
            verdict = _verdict(job, item.jobs, results, layout)
            if verdict is WAIT:
                continue
            if verdict:
                skipped[job], results[job] = verdict, SKIPPED
                changed = True
            else:
                ready.append(job)
                results[job] = ""  # requested now: those that depend on it wait
    return ready, skipped


def _dependencies(job: str, layout: Layout | Callable[[str], Job | None]) -> tuple:
    """The job's dependencies; `layout` is the layout, or what gives the item's jobs as they run for it."""
    defined = layout(job) if callable(layout) else layout.jobs.get(job)
    return defined.dependencies if defined else ()


def _verdict(job: str, jobs: list[str], results: dict[str, str], layout: Layout | Callable[[str], Job | None],
             ) -> str | None:
    """Why `job` is skipped, WAIT while a job it depends on has not finished, or "" when it may start (a job the
    item does not run is a soft dependency here: a hard one stopped every job already)."""
    waiting = False
    for dep in _dependencies(job, layout):
        if dep.name not in jobs:
            continue
        result = results.get(dep.name, "")
        if not result:
            waiting = True
        elif result != SUCCESS:
            return f"its dependency {dep.name}: {result}"
    return WAIT if waiting else ""


def skipped_build(job: str, message: str, voting: bool) -> Build:
    """The record of a job that never ran: finished, SKIPPED, requested from no executor."""
    return Build(job=job, voting=voting, result=SKIPPED, message=message)
