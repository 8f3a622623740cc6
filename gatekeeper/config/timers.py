"""Zuul's timer trigger in the layout: a pipeline's `trigger: {timer: [{time: CRON}]}`, a schedule on which its
jobs run on every branch of every project that has jobs in it. Read and checked here (the cron text parses, with
5 fields or 6 with seconds as Zuul allows; only an independent pipeline has a timer)."""

from __future__ import annotations

from croniter import croniter

from gatekeeper.config.nodesets import ErrorFn

TIMER = "timer"  # the trigger section's key, beside the connections' names


def cron_problem(spec: str) -> str:
    """Why `spec` is not a cron schedule the timer takes, as a phrase for people; "" when it is."""
    fields = spec.split()
    if len(fields) not in (5, 6):
        return (f"has {len(fields)} field(s): a cron schedule has 5 (minute hour day month weekday) or 6 (with "
                "seconds last)")
    if not croniter.is_valid(spec):
        return "does not parse as a cron schedule (minute hour day month weekday [second])"
    return ""


def pipeline_timers(pipeline: dict, where: str, error: ErrorFn) -> tuple[str, ...]:
    """The cron schedules of a pipeline's timer trigger (none without one); a schedule that does not parse, and a
    timer on a dependent pipeline, are errors naming the pipeline, the file and the line."""
    entries = (pipeline.get("trigger") or {}).get(TIMER)
    if not entries:
        return ()
    if pipeline["manager"] == "dependent":
        error(pipeline["trigger"], TIMER, where, "a dependent pipeline cannot have a timer trigger (a branch tip "
                                                 "has no change to gate): use an independent pipeline")
    times = []
    for entry in entries:
        spec = str(entry["time"])
        problem = cron_problem(spec)
        if problem:
            error(entry, "time", where, f'timer time "{spec}" {problem}')
        else:
            times.append(spec)
    return tuple(dict.fromkeys(times))
