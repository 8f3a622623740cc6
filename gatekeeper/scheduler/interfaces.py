"""The narrow interfaces a pipeline manager acts through: where changes come from, and where its work goes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gatekeeper.scheduler.model import Change
from gatekeeper.zk.builds import BuildRequest
from gatekeeper.zk.merges import MergeRequest


class ChangeSource(Protocol):
    """Reads changes from the code review system (Gerrit)."""

    def get_change(self, number: int) -> Change | None:
        """The change's current patch set with approvals, status and resolved `needs`; None if unknown."""

    def git_url(self, project: str) -> str:
        """Where a merger fetches `project` from."""


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


@dataclass
class ReportOutcome:
    ok: bool = True  # False: the submit was refused
    message: str = ""  # why it was refused


class Backend(Protocol):
    """Where a pipeline's work goes: ZooKeeper in the service, lists in unit tests."""

    def request_merge(self, request: MergeRequest) -> None: ...

    def request_build(self, request: BuildRequest) -> None: ...

    def cancel_build(self, build_id: str) -> None: ...

    def report(self, report: Report) -> ReportOutcome | None:
        """The outcome, or None while the report is on its way (ask again on a later pass)."""
