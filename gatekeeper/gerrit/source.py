"""The Gerrit driver seen through the scheduler's interfaces: changes from queries, trigger events from the
connection's queue, reports as reviews."""

from __future__ import annotations

import logging
import re
import urllib.parse
from typing import Any

from gatekeeper.gerrit.trigger import from_record
from gatekeeper.models.events import TriggerEvent
from gatekeeper.models.interfaces import Report, ReportOutcome
from gatekeeper.models.pipeline import Change

log = logging.getLogger("gatekeeper.gerrit.source")

DEPENDS_ON = re.compile(r"^Depends-On:\s*(\S+)\s*$", re.MULTILINE | re.IGNORECASE)
URL_NUMBER = re.compile(r"(?:/\+/|/c/|/)(\d+)/?(?:#.*)?$")
# A change's number in a URL that goes on with a patch set (/c/org/a/+/123/4, #/c/123/4): the first after /+/ or /c/
URL_CHANGE = (re.compile(r"/\+/(\d+)(?:/|$)"), re.compile(r"/c/(\d+)(?:/|$)"))
CHANGE_ID = re.compile(r"^I[0-9a-f]{40}$")
# A change's files travel with its item in ZooKeeper, whose records hold 1 MiB at most. The paths of a change past
# this many bytes (a vendored tree, a mass rename) are not kept: its files count as not known, so every job of its
# pipelines runs for it (file matchers never skip a job for want of information).
FILES_BUDGET = 256 * 1024
KEEP_SUBJECT = 1000  # characters of a subject kept (it is shown, never matched)


def kept_files(key: str, files: list[str]) -> list[str]:
    """`files`, or [] (not known) when their paths would take more than FILES_BUDGET bytes."""
    size = sum(len(f.encode()) + 4 for f in files)
    if size <= FILES_BUDGET:
        return files
    log.warning("change %s touches %d files (%d bytes of paths, more than the %d kept): its files count as not "
                "known, so every job runs for it", key, len(files), size, FILES_BUDGET)
    return []


class GerritChangeSource:
    """Change snapshots from `gerrit query`: current patch set, approvals, and the open changes it needs."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._submit_records = True  # False once Gerrit refused `--submit-records` (asked without it from then on)
        self._told_no_records = False  # the missing submit records were logged (once per source)

    def git_url(self, project: str) -> str:
        return self.connection.git_url(project)

    def trigger_event(self, record: Any, connection: str, ident: str) -> TriggerEvent:
        return from_record(record, connection, ident)

    def branch_heads(self, project: str) -> dict[str, str]:
        """Branch -> tip revision of `project`, as Gerrit's git serves it."""
        return self.connection.branch_heads(project)

    def get_change(self, number: int) -> Change | None:
        from gatekeeper.gerrit.client import GerritCommandError

        flags = ("--current-patch-set", "--files", "--commit-message", "--dependencies")
        try:
            row = self.connection.get_change(number, *flags, *(("--submit-records",) if self._submit_records else ()))
        except GerritCommandError as exc:
            if not self._submit_records or "submit-records" not in str(exc):
                raise
            log.warning("Gerrit refuses `gerrit query --submit-records` (%s): changes are read without their submit "
                        "records, and a dependent pipeline enqueues them as if Gerrit could submit them", exc)
            self._submit_records = False
            row = self.connection.get_change(number, *flags)
        if not row:
            return None
        return self.to_change(row)

    def to_change(self, row: dict) -> Change:
        ps = row.get("currentPatchSet") or {}
        change = Change(
            project=row.get("project", ""), branch=row.get("branch", "master"), number=int(row["number"]),
            patchset=int(ps.get("number", 0)), ref=ps.get("ref", ""), commit=ps.get("revision", ""),
            url=row.get("url", ""), subject=row.get("subject", "")[:KEEP_SUBJECT], change_id=row.get("id", ""),
            status=row.get("status", "NEW"), current_patchset=int(ps.get("number", 0)), wip=bool(row.get("wip")),
            owner=(row.get("owner") or {}).get("username", ""),
            approvals=[{"label": a.get("type", ""), "value": int(a.get("value", 0)),
                        "by": (a.get("by") or {}).get("username", "")} for a in ps.get("approvals") or []],
            files=kept_files(f"{row['number']},{ps.get('number', 0)}",
                             [f["file"] for f in ps.get("files") or [] if f.get("file")]),
        )
        change.missing_labels = self._missing_labels(row, change.key)
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
            host = _url_host(target)
            if host and host not in self._hosts() | {_url_host(row.get("url") or "")}:
                # Zuul looks a URL's host up among its connections and ignores one none of them serves: its number
                # is not a change of this Gerrit (this Gerrit's hosts: its web URL's, its server's, and the one its
                # own change URLs carry)
                log.info("[%s] ignoring Depends-On %s: %s is not this Gerrit's host", change.key, target, host)
                continue
            dep_rows = self._depends_on_rows(target)
            if dep_rows is None:
                change.needs_error = f"its Depends-On {target} names no change Gerrit knows"
                continue
            if not dep_rows:
                log.debug("[%s] ignoring Depends-On %s: every change with that Change-Id is closed", change.key,
                         target)
            for dep_row in dep_rows:
                if dep_row.get("status") == "MERGED":
                    continue
                key = f"{dep_row['number']},{(dep_row.get('currentPatchSet') or {}).get('number', 0)}"
                if key not in needs:
                    needs.append(key)
        change.needs = needs
        return change

    def _missing_labels(self, row: dict, key: str) -> dict[str, str]:
        """What the change's submit records say it lacks, read as Zuul's GerritChange reads them: each label a
        NOT_READY record gives as NEED or REJECT. A record that is OK, CLOSED or a RULE_ERROR lacks nothing, and so
        does a change Gerrit gave no records for (Zuul's canMerge then lets it in; Gerrit decides at the submit)."""
        records = row.get("submitRecords")
        if records is None:
            if self._submit_records and not self._told_no_records and row.get("status") == "NEW":
                self._told_no_records = True
                log.warning("[%s] Gerrit gave no submit records for an open change (asked with --submit-records): "
                            "a dependent pipeline enqueues changes as if Gerrit could submit them", key)
            return {}
        missing: dict[str, str] = {}
        for record in records:
            if record.get("status") == "RULE_ERROR":
                log.warning("[%s] Gerrit's submit rule failed on this change (RULE_ERROR): it counts as able to "
                            "merge, as in Zuul; Gerrit decides at the submit", key)
            if record.get("status") != "NOT_READY":
                continue
            for label in record.get("labels") or []:
                if label.get("status") in ("NEED", "REJECT") and label.get("label"):
                    # a veto outweighs a need when two records name the same label
                    if missing.get(label["label"]) != "REJECT":
                        missing[label["label"]] = label["status"]
        return missing

    def _hosts(self) -> set[str]:
        """The host names a Depends-On URL of this Gerrit may carry: its web URL's and its server's (Zuul's
        getSourceByHostname takes the baseurl's host, the server and the canonical hostname)."""
        return {h.lower() for h in (_url_host(self.connection.web_url), self.connection.hostname) if h}

    def _depends_on_rows(self, target: str) -> list[dict] | None:
        """The changes a Depends-On names (None when Gerrit knows none): the one its URL names; for a Change-Id,
        every open change with it (a fix and its backports on other branches, as Zuul has it), and none when all
        are closed (Zuul's legacy Change-Id form keeps open changes only)."""
        number = _url_change_number(target) if not CHANGE_ID.match(target) else None
        if number is not None:
            row = self.connection.get_change(number, "--current-patch-set")
            return [row] if row else None
        rows = self.connection.query(f"change:{target}", "--current-patch-set")
        if not rows:
            return None
        if not CHANGE_ID.match(target):
            return rows[:1]
        return [r for r in rows if r.get("status") == "NEW"]


def _url_change_number(target: str) -> int | None:
    """The change a Depends-On URL or path names: the number after /+/ or /c/ (a patch set may follow it), else its
    trailing number; None when it names none."""
    for pattern in (*URL_CHANGE, URL_NUMBER):
        match = pattern.search(target)
        if match:
            return int(match.group(1))
    return None


def _url_host(target: str) -> str:
    """The host name of a Depends-On that is a URL with one ("" for a Change-Id or a bare path)."""
    try:
        return (urllib.parse.urlparse(target).hostname or "") if "://" in target else ""
    except ValueError:
        return ""


class GerritReporter:
    """Posts a report as one `gerrit review` (votes, message, and --submit on a gate success).

    Each message ends with the report's marker, so that Gerrit itself tells whether a report whose answer was
    lost (or whose sender died) arrived: `reported` reads that before anything is sent again.
    """

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def report(self, report: Report) -> ReportOutcome:
        from gatekeeper.gerrit.client import GerritError, GerritSubmitError, GerritUnavailableError

        change = report.change
        message = with_marker(report.message, report.marker)
        # as Zuul's Gerrit connection, every review is tagged (its reporter's own tag wins): Gerrit's UI, the
        # results-summary plugin and CI dashboards find a bot's messages and votes by it
        tag = report.tag or (f"autogenerated:zuul:{report.pipeline}" if report.pipeline else None)
        try:
            self.connection.review(change.number, change.patchset, message or None, report.labels or None,
                                   submit=report.submit, tag=tag, project=change.project,
                                   marker=report.marker if message else None)
        except GerritSubmitError as exc:
            return ReportOutcome(False, _gerrit_reason(str(exc)))
        except GerritUnavailableError as exc:
            log.warning("[%s %s] %s report not sent yet: %s", report.pipeline, change.key, report.action, exc)
            return ReportOutcome(False, str(exc), settled=False)
        except GerritError as exc:
            log.warning("[%s %s] %s report refused: %s", report.pipeline, change.key, report.action, exc)
            return ReportOutcome(not report.submit, str(exc))
        return ReportOutcome()

    def reported(self, report: Report) -> ReportOutcome | None:
        """What Gerrit shows of `report`: its outcome if it arrived (a submit whose message arrived but which did
        not merge is submitted now), None if nothing of it is there; unsettled if Gerrit cannot be asked."""
        from gatekeeper.gerrit.client import GerritError

        change = report.change
        try:
            row = self.connection.get_change(change.number, "--current-patch-set", "--comments")
        except GerritError as exc:
            return ReportOutcome(False, str(exc), settled=False)
        if row is None:
            return None
        merged = row.get("status") == "MERGED"
        if report.submit and merged:
            return ReportOutcome()
        marker = report.marker if report.message else ""
        if not marker or not any(marker in (c.get("message") or "") for c in row.get("comments") or []):
            return None
        if not report.submit:
            return ReportOutcome()
        log.info("[%s %s] %s report arrived but the change did not merge; submitting", report.pipeline,
                 change.key, report.action)
        submit_only = Report(report.pipeline, change, report.action, "", {}, submit=True, tag=report.tag,
                             key=report.key)
        return self.report(submit_only)


def with_marker(message: str, marker: str) -> str:
    """The message as posted: the report's marker on a line of its own at the end (no marker without text)."""
    return f"{message}\n\n{marker}" if message and marker else message


def without_marker(message: str) -> str:
    """A posted message as people wrote it, without the report marker."""
    return MARKER_LINE.sub("", message)


MARKER_LINE = re.compile(r"\n\nGatekeeper-Report: [0-9a-f]{12}$")


def _gerrit_reason(text: str) -> str:
    """Gerrit's own words from a GerritSubmitError ("Gerrit host: review of ... failed: <reason>")."""
    return text.split(" failed: ", 1)[-1].strip()
