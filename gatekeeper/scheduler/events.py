"""The events a pipeline reacts to: Gerrit trigger events, in the scheduler's own terms.

The connection's queue holds typed events (`gatekeeper.gerrit.events.GerritEvent.to_dict()`), validated and
parsed once by the Gerrit listener; this module only maps one to a TriggerEvent. It never reads Gerrit's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gatekeeper.gerrit.events import GerritEvent, event_from_gerrit


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
    id: str = ""  # the event's id in its ZooKeeper queue
    raw: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0  # failed tries before this one (an event set aside and put back)

    @property
    def key(self) -> str:
        return f"{self.change},{self.patchset}"


class UnreadableEvent(ValueError):
    """A queued record that is not an event the scheduler can act on (it is set aside, never retried)."""


def from_event(event: GerritEvent, connection: str = "gerrit", ident: str = "") -> TriggerEvent:
    """The trigger event for one typed Gerrit event."""
    approvals = []
    for a in event.approvals:
        approval: dict[str, Any] = {"label": a.type, "value": a.value}
        if a.old_value is not None:
            approval["old"] = a.old_value
        approvals.append(approval)
    return TriggerEvent(
        type=event.type,
        connection=connection,
        project=event.project or "",
        branch=event.branch or "",
        change=event.change_number or 0,
        patchset=event.patchset or 0,
        approvals=approvals,
        comment=event.comment or "",
        account=event.author or "",
        id=ident,
        raw=event.raw,
    )


def from_record(data: Any, connection: str = "gerrit", ident: str = "") -> TriggerEvent:
    """The trigger event for one record of a connection's queue; raises UnreadableEvent for anything else."""
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise UnreadableEvent(f"event {ident or '?'} of connection {connection} is not an event record")
    try:
        event = GerritEvent.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise UnreadableEvent(f"event {ident or '?'} of connection {connection} does not read: {exc}") from exc
    if event.change_number is not None and (not isinstance(event.change_number, int)
                                            or isinstance(event.change_number, bool)):
        raise UnreadableEvent(f"event {ident or '?'} of connection {connection}: change_number is "
                              f"{event.change_number!r}, expected an integer")
    if event.patchset is not None and (not isinstance(event.patchset, int) or isinstance(event.patchset, bool)):
        raise UnreadableEvent(f"event {ident or '?'} of connection {connection}: patchset is "
                              f"{event.patchset!r}, expected an integer")
    return from_event(event, connection, ident)


def from_gerrit(data: dict[str, Any], connection: str = "gerrit", ident: str = "") -> TriggerEvent:
    """Gerrit's own stream-events JSON object -> a trigger event, through the Gerrit parser (tools and tests);
    raises UnreadableEvent for what that parser rejects."""
    event = event_from_gerrit(data)
    if event is None:
        raise UnreadableEvent(f"not a Gerrit event the gate acts on: {str(data)[:200]}")
    return from_event(event, connection, ident)
