"""The narrow interfaces a pipeline manager acts through: where changes come from, and where its work goes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from gatekeeper.models.events import TriggerEvent
from gatekeeper.models.pipeline import Change
from gatekeeper.zk.builds import BuildRequest
from gatekeeper.zk.merges import MergeRequest


class SourceError(Exception):
    """An error the code review system answered with (a refusal, a failed query): not a bug of the scheduler."""


class SourceUnavailable(SourceError):
    """The code review system could not be reached, or did not answer in time, after every retry."""


class ChangeSource(Protocol):
    """Reads changes from the code review system (the Gerrit driver's `GerritChangeSource`)."""

    def get_change(self, number: int) -> Change | None:
        """The change's current patch set with approvals, status and resolved `needs`; None if unknown."""

    def git_url(self, project: str) -> str:
        """Where a merger fetches `project` from."""

    def trigger_event(self, record: Any, connection: str, ident: str) -> TriggerEvent:
        """The trigger event for one record of the connection's event queue; raises UnreadableEvent."""


@dataclass
class Report:
    """One message (and votes, and maybe a submit) for one change."""

    pipeline: str
    change: Change
    action: str  # start, success, failure, merge-conflict, dequeue, refused, submit-refused
    message: str
    labels: dict[str, int]
    submit: bool = False
    tag: str = ""
    key: str = ""  # ledger key: the same key is never reported twice

    @property
    def marker(self) -> str:
        """A text unique to this report, carried in its message, by which Gerrit's copy of it is recognised."""
        return "Gatekeeper-Report: " + hashlib.sha1(self.key.encode()).hexdigest()[:12] if self.key else ""


@dataclass
class ReportOutcome:
    ok: bool = True  # False: the submit was refused
    message: str = ""  # why it was refused
    settled: bool = True  # False: Gerrit could not be reached or asked; the report must be tried again


class Backend(Protocol):
    """Where a pipeline's work goes: ZooKeeper in the service, lists in unit tests."""

    def request_merge(self, request: MergeRequest) -> None: ...

    def request_build(self, request: BuildRequest) -> None: ...

    def cancel_build(self, build_id: str) -> None: ...

    def report(self, report: Report) -> ReportOutcome | None:
        """The outcome, or None while the report is on its way (ask again on a later pass)."""
