"""The events a pipeline reacts to: Gerrit trigger events, in the scheduler's own terms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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

    @property
    def key(self) -> str:
        return f"{self.change},{self.patchset}"


ACCOUNT_KEYS = ("author", "uploader", "abandoner", "restorer", "submitter", "remover", "changer", "adder", "deleter")


def from_gerrit(data: dict[str, Any], connection: str = "gerrit", ident: str = "") -> TriggerEvent:
    """Read a Gerrit stream-events JSON object, or a gatekeeper.gerrit.events `to_dict()` of one."""
    if "raw" in data and isinstance(data["raw"], dict) and "type" in data["raw"]:
        data = data["raw"]  # a typed event that kept Gerrit's own JSON
    change = data.get("change") or {}
    patchset = data.get("patchSet") or {}
    ref = data.get("refName") or (data.get("refUpdate") or {}).get("refName", "")
    branch = change.get("branch") or (ref[len("refs/heads/"):] if ref.startswith("refs/heads/") else ref)
    account = ""
    for key in ACCOUNT_KEYS:
        if isinstance(data.get(key), dict):
            account = data[key].get("username", "")
            break
    approvals = []
    for a in data.get("approvals") or []:
        approval = {"label": a.get("type", ""), "value": int(a.get("value", 0))}
        if "oldValue" in a:
            approval["old"] = int(a["oldValue"])
        approvals.append(approval)
    return TriggerEvent(
        type=data.get("type", ""),
        connection=connection,
        project=change.get("project") or data.get("project") or (data.get("refUpdate") or {}).get("project", ""),
        branch=branch,
        change=int(change.get("number", 0) or 0),
        patchset=int(patchset.get("number", 0) or 0),
        approvals=approvals,
        comment=data.get("comment", ""),
        account=account,
        id=ident,
        raw=data,
    )
