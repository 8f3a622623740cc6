"""Zuul's `supercedes`: a change that enters a pipeline leaves the pipelines that one names.

Each pipeline decides for itself, under its own lock: it sees the events that may move one of its changes into a
pipeline superseding it, and removes that change's items when such a pipeline would take the change."""

from __future__ import annotations

from gatekeeper.config.layout import Layout, Pipeline
from gatekeeper.models.events import TriggerEvent
from gatekeeper.models.pipeline import Change
from gatekeeper.scheduler.triggers import cannot_merge, pipeline_triggered, unmet_requirements


def superseding(layout: Layout, pipeline: Pipeline) -> list[Pipeline]:
    """The pipelines that supercede `pipeline`."""
    return [other for other in layout.pipelines.values() if pipeline.name in other.supercedes]


def may_supersede(layout: Layout, pipeline: Pipeline, event: TriggerEvent) -> bool:
    """Whether `event` triggers a pipeline that supercedes `pipeline` (so `pipeline` must see it)."""
    return any(pipeline_triggered(other, event) for other in superseding(layout, pipeline))


def superseded_by(layout: Layout, pipeline: Pipeline, event: TriggerEvent, change: Change) -> str:
    """The name of a pipeline superseding `pipeline` that `event` brings `change` into ("" if none): one that the
    event triggers, whose requirements the change meets, that Gerrit's submit records let it into (Zuul leaves the
    superseded pipelines only once the change entered), and where its project runs jobs."""
    project = layout.projects.get(change.project)
    for other in superseding(layout, pipeline):
        if (pipeline_triggered(other, event, change) and not unmet_requirements(other, change)
                and not cannot_merge(other, change)):
            if project and project.jobs_for(other.name):
                return other.name
    return ""
