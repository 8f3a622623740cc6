"""The Gerrit driver's trigger: Gerrit events as the scheduler's TriggerEvents.

The connection's queue holds typed events (`gatekeeper.gerrit.events.GerritEvent.to_dict()`), validated and
parsed once by the Gerrit listener; this module only maps one to a TriggerEvent. It never reads Gerrit's JSON.
"""

from __future__ import annotations

from typing import Any

from gatekeeper.gerrit.events import GerritEvent, event_from_gerrit
from gatekeeper.models.events import TriggerEvent, UnreadableEvent


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
        email=event.author_email or "",
        id=ident,
        raw=event.raw,
        ref=_full_ref(event.ref_name or "") if event.type == "ref-updated" else "",
        oldrev=event.old_rev or "",
        newrev=event.new_rev or "",
    )


def _full_ref(name: str) -> str:
    """Gerrit 2.x named a branch short in refUpdate.refName: the full ref, as triggers match it."""
    return name if not name or name.startswith("refs/") else f"refs/heads/{name}"


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
