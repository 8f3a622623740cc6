"""Gerrit's submit records as the Gerrit source reads them onto a change (Zuul's GerritChange.missing_labels), as
the dependent pipeline judges them (Zuul's canMerge with the success reporters' allow-needs), and as an item
stored before they were read still loads. The scenarios over the real wires: tests/functional/
test_gate_submit_records.py."""

from __future__ import annotations

import logging

import pytest

from gatekeeper.config.model import Pipeline, Report
from gatekeeper.gerrit.client import GerritCommandError
from gatekeeper.gerrit.source import GerritChangeSource
from gatekeeper.models.pipeline import Change, Item
from gatekeeper.scheduler.triggers import cannot_merge

GATE = Pipeline("gate", "dependent", reports={"success": Report(labels={"Verified": 2}, submit=True)})


def record(status: str, **labels: str) -> dict:
    return {"status": status, "labels": [{"label": k.replace("_", "-"), "status": v} for k, v in labels.items()]}


class Gerrit:
    """Answers `gerrit query` from one row; `refuse_submit_records`: as a Gerrit that does not know the option."""

    hostname, web_url = "review", "https://review"

    def __init__(self, row: dict, refuse_submit_records: bool = False) -> None:
        self.row, self.refuse = row, refuse_submit_records
        self.asked: list[tuple[str, ...]] = []

    def get_change(self, number: int, *flags: str) -> dict | None:
        self.asked.append(flags)
        if self.refuse and "--submit-records" in flags:
            raise GerritCommandError("review", "gerrit query", 1, 'fatal: "--submit-records" is not a valid option')
        return self.row


def row(*records: dict | None) -> dict:
    data = {"project": "org/a", "number": 1, "status": "NEW", "currentPatchSet": {"number": 1}}
    if records != (None,):
        data["submitRecords"] = list(records)
    return data


@pytest.mark.parametrize(("records", "missing"), [
    ((record("OK", Code_Review="OK", Verified="OK"),), {}),
    ((record("NOT_READY", Code_Review="OK", Verified="NEED", Legal="NEED"),), {"Verified": "NEED", "Legal": "NEED"}),
    ((record("NOT_READY", Code_Review="REJECT", Verified="NEED", Other="MAY", Gone="IMPOSSIBLE"),),
     {"Code-Review": "REJECT", "Verified": "NEED"}),
    # a plugin's second record: every NOT_READY one counts, a veto outweighs a need
    ((record("OK"), record("NOT_READY", Legal="NEED"), record("NOT_READY", Legal="REJECT")), {"Legal": "REJECT"}),
    ((record("CLOSED"),), {}),
])
def test_the_source_keeps_the_labels_a_not_ready_record_needs_or_rejects(records: tuple, missing: dict) -> None:
    gerrit = Gerrit(row(*records))
    change = GerritChangeSource(gerrit).get_change(1)
    assert change is not None and change.missing_labels == missing
    assert "--submit-records" in gerrit.asked[0]


def test_a_rule_error_or_no_records_lets_the_change_in_as_zuul_does_and_says_so(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="gatekeeper.gerrit.source")
    assert GerritChangeSource(Gerrit(row({"status": "RULE_ERROR"}))).get_change(1).missing_labels == {}
    assert "[1,1] Gerrit's submit rule failed on this change (RULE_ERROR)" in caplog.text
    source = GerritChangeSource(Gerrit(row(None)))
    assert source.get_change(1).missing_labels == {} and source.get_change(1).missing_labels == {}
    assert caplog.text.count("Gerrit gave no submit records") == 1  # once per source, not per lookup


def test_a_gerrit_that_refuses_the_option_is_asked_without_it_from_then_on(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="gatekeeper.gerrit.source")
    gerrit = Gerrit(row(None), refuse_submit_records=True)
    source = GerritChangeSource(gerrit)
    assert source.get_change(1).missing_labels == {} and source.get_change(1).missing_labels == {}
    assert ["--submit-records" in flags for flags in gerrit.asked] == [True, False, False]
    assert caplog.text.count("Gerrit refuses `gerrit query --submit-records`") == 1
    assert "Gerrit gave no submit records" not in caplog.text


def test_only_the_labels_the_success_report_votes_on_may_be_missing() -> None:
    assert cannot_merge(GATE, Change(number=1, missing_labels={"Verified": "NEED"})) == ""
    assert cannot_merge(GATE, Change(number=1, missing_labels={"Verified": "REJECT"})) == ""  # the gate's own -2
    assert cannot_merge(GATE, Change(number=1, missing_labels={"Verified": "NEED", "Legal": "NEED", "Docs": "NEED",
                                                               "Code-Review": "REJECT"})) == \
        "Gerrit would not submit it: it needs Legal and Docs, and Code-Review has a blocking vote"
    check = Pipeline("check", "independent", reports={"success": Report(labels={"Verified": 1})})
    assert cannot_merge(check, Change(number=1, missing_labels={"Legal": "NEED"})) == ""
    no_votes = Pipeline("gate", "dependent", reports={"success": Report(submit=True)})
    assert cannot_merge(no_votes, Change(number=1, missing_labels={"Verified": "NEED"})) == \
        "Gerrit would not submit it: it needs Verified"


def test_an_item_stored_before_submit_records_were_read_loads_as_able_to_merge() -> None:
    stored = Item(change=Change(project="org/a", number=1, patchset=1)).to_dict()
    del stored["change"]["missing_labels"]
    item = Item.from_dict(stored)
    assert item.change.missing_labels == {} and cannot_merge(GATE, item.change) == ""
    again = Item.from_dict(Item(change=Change(number=2, missing_labels={"Legal": "NEED"})).to_dict())
    assert again.change.missing_labels == {"Legal": "NEED"}
