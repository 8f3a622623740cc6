"""The events a pipeline reacts to, in the scheduler's own terms: what a source driver's trigger produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gatekeeper.models.pipeline import ref_key


@dataclass
class TriggerEvent:
    """One Gerrit event about a change (or a ref), reduced to what triggers and requirements look at."""

    type: str
    connection: str = "gerrit"
    project: str = ""
    branch: str = ""
    change: int = 0  # 0: not about a change (ref-updated, ...)
    patchset: int = 0
    approvals: list[dict[str, Any]] = field(default_factory=list)  # [{label, value, old}] as the event carries
    comment: str = ""
    account: str = ""  # who did it (username)
    email: str = ""  # ... and that account's email
    id: str = ""  # the event's id in its ZooKeeper queue
    raw: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0  # failed tries before this one (an event set aside and put back)
    ref: str = ""  # ref-updated: the full ref name (refs/heads/master)
    oldrev: str = ""  # ref-updated: the ref's revision before, and after (all zeros: created, or deleted)
    newrev: str = ""

    @property
    def key(self) -> str:
        if not self.change and self.ref:
            return ref_key(self.project, self.ref, self.newrev)
        return f"{self.change},{self.patchset}"

    @property
    def deletes_ref(self) -> bool:
        """A ref-updated that deleted its ref (its new revision is all zeros)."""
        return bool(self.ref) and bool(self.newrev) and self.newrev.strip("0") == ""


class UnreadableEvent(ValueError):
    """A queued record that is not an event the scheduler can act on (it is set aside, never retried)."""
