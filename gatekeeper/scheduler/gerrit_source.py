"""The Gerrit connection seen through the scheduler's interfaces: changes from queries, reports as reviews."""

from __future__ import annotations

import logging
import re
from typing import Any

from gatekeeper.scheduler.interfaces import Report, ReportOutcome
from gatekeeper.scheduler.model import Change

log = logging.getLogger("gatekeeper.scheduler.gerrit")

DEPENDS_ON = re.compile(r"^Depends-On:\s*(\S+)\s*$", re.MULTILINE | re.IGNORECASE)
URL_NUMBER = re.compile(r"(?:/\+/|/c/|/)(\d+)/?(?:#.*)?$")


class GerritChangeSource:
    """Change snapshots from `gerrit query`: current patch set, approvals, and the open changes it needs."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def git_url(self, project: str) -> str:
        return self.connection.git_url(project)

    def get_change(self, number: int) -> Change | None:
        row = self.connection.get_change(number, "--current-patch-set", "--commit-message", "--dependencies")
        if not row:
            return None
        return self.to_change(row)

    def to_change(self, row: dict) -> Change:
        ps = row.get("currentPatchSet") or {}
        change = Change(
            project=row.get("project", ""), branch=row.get("branch", "master"), number=int(row["number"]),
            patchset=int(ps.get("number", 0)), ref=ps.get("ref", ""), commit=ps.get("revision", ""),
            url=row.get("url", ""), subject=row.get("subject", ""), change_id=row.get("id", ""),
            status=row.get("status", "NEW"), current_patchset=int(ps.get("number", 0)), wip=bool(row.get("wip")),
            owner=(row.get("owner") or {}).get("username", ""),
            approvals=[{"label": a.get("type", ""), "value": int(a.get("value", 0)),
                        "by": (a.get("by") or {}).get("username", "")} for a in ps.get("approvals") or []],
        )
        needs: list[str] = []
        for dep in row.get("dependsOn") or []:
            number = int(dep["number"])
            dep_row = self.connection.get_change(number, "--current-patch-set")
            if dep_row and dep_row.get("status") == "MERGED":
                continue
            key = f"{number},{int(dep['ref'].rsplit('/', 1)[1])}" if dep.get("ref") else f"{number},0"
            if key not in needs:
                needs.append(key)
        for target in DEPENDS_ON.findall(row.get("commitMessage", "")):
            dep_row = self._depends_on_row(target)
            if dep_row is None:
                change.needs_error = f"its Depends-On {target} names no change Gerrit knows"
                continue
            if dep_row.get("status") == "MERGED":
                continue
            key = f"{dep_row['number']},{(dep_row.get('currentPatchSet') or {}).get('number', 0)}"
            if key not in needs:
                needs.append(key)
        change.needs = needs
        return change

    def _depends_on_row(self, target: str) -> dict | None:
        match = URL_NUMBER.search(target)
        if match and not target.startswith("I"):
            return self.connection.get_change(int(match.group(1)), "--current-patch-set")
        rows = self.connection.query(f"change:{target}", "--current-patch-set")
        open_rows = [r for r in rows if r.get("status") == "NEW"]
        return (open_rows or rows or [None])[0]


class GerritReporter:
    """Posts a report as one `gerrit review` (votes, message, and --submit on a gate success)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def report(self, report: Report) -> ReportOutcome:
        from gatekeeper.gerrit.client import GerritError, GerritSubmitError

        change = report.change
        try:
            self.connection.review(change.number, change.patchset, report.message or None, report.labels or None,
                                   submit=report.submit, tag=report.tag or None, project=change.project)
        except GerritSubmitError as exc:
            return ReportOutcome(False, _gerrit_reason(str(exc)))
        except GerritError as exc:
            log.warning("[%s %s] %s report failed: %s", report.pipeline, change.key, report.action, exc)
            return ReportOutcome(not report.submit, str(exc))
        return ReportOutcome()


def _gerrit_reason(text: str) -> str:
    """Gerrit's own words from a GerritSubmitError ("Gerrit host: review of ... failed: <reason>")."""
    return text.split(" failed: ", 1)[-1].strip()
