"""Zuul's documented behaviour, third round, over real wires: the forms of a Depends-On footer Zuul accepts, a
Depends-On on a merged or an abandoned change, and the comment trigger matched against Gerrit's whole comment text.
Each docstring names the Zuul page, test or source the expectation comes from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gatekeeper.config.layout import parse_layout
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT

REFERENCE_LAYOUT = Path(__file__).resolve().parents[2] / "layouts" / "openstack.yaml"


def check_changes(gate: GateHarness) -> list[str]:
    return sorted(changes for _, _, changes in gate.history("check"))


# Zuul's tests/unit/test_gerrit_crd.py URL_FORMATS (the three URL schemata of Gerrit's versions and the legacy
# Change-Id), and zuul/lib/dependson.py DEPENDS_ON_RE, which is case-insensitive.
FORMS = {
    "change-url": lambda sim, a: f"Depends-On: {sim.web_url}/c/{a.project.name}/+/{a.number}",
    "change-url-slash": lambda sim, a: f"Depends-On: {sim.web_url}/c/{a.project.name}/+/{a.number}/",
    "hash-url": lambda sim, a: f"Depends-On: {sim.web_url}/#/c/{a.number}/",
    "short-url": lambda sim, a: f"Depends-On: {sim.web_url}/{a.number}",
    "change-id": lambda sim, a: f"Depends-On: {a.change_id}",
    "lower-case": lambda sim, a: f"depends-on: {sim.web_url}/c/{a.project.name}/+/{a.number}",
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_each_depends_on_form_zuul_accepts_tests_the_change_on_the_one_it_names(gate: GateHarness,
                                                                                form: str) -> None:
    """Zuul's test_gerrit_crd (URL_FORMATS: `{baseurl}/N`, `{baseurl}/#/c/N`, `{baseurl}/c/project/+/N/`, the
    legacy Change-Id) and zuul/lib/dependson.py (`^Depends-On: (.*?)\\s*$`, re.IGNORECASE): B (org/a) names A
    (org/b) in each form; B's check runs on A ("1,1 2,1"), and A is not reported on for it."""
    a = gate.change("org/b", "A")
    gate.settle()
    b = gate.sim.create_change("org/a", "B", owner="jane", body=FORMS[form](gate.sim, a))
    gate.settle()
    assert check_changes(gate) == ["1,1", "1,1 2,1"]
    assert gate.ci_votes(b) == {"Verified": 1}
    assert len([m for m in gate.ci_messages(a) if "Build succeeded" in m]) == 1


def test_several_depends_on_lines_put_every_named_change_ahead_in_order(gate: GateHarness) -> None:
    """Zuul's test_crd_multiline (A Depends-On B and C, two footer lines): C (org/a) needs A and B (org/b); all
    approved, they are gated A, B, C and C is tested on both; all merge."""
    a, b = gate.change("org/b", "A"), gate.change("org/b", "B")
    c = gate.change("org/a", "C", depends_on=(a, b))
    gate.settle()
    gate.approve(a, b, c)
    gate.settle()
    assert [gate.status(x) for x in (a, b, c)] == ["MERGED"] * 3
    assert gate.merge_order() == [1, 2, 3]
    gate.assert_history(("unit", "SUCCESS", "1,1 2,1 3,1"), ("integration", "SUCCESS", "1,1 2,1 3,1"))


def test_a_depends_on_a_merged_change_is_satisfied_and_the_change_gates_alone(gate: GateHarness) -> None:
    """Zuul's manager (getMissingNeededChanges: "Needed change is merged" -> continue) and test_crd_unshared_gate
    (once B merged, A "should be able to be enqueued and merged"): A merges; B, which Depends-On A, is checked and
    gated on the branch alone."""
    a = gate.change("org/c", "A")
    gate.settle()
    gate.approve(a)
    gate.settle()
    assert gate.status(a) == "MERGED"
    b = gate.change("org/a", "B", depends_on=(a,))
    gate.settle()
    gate.approve(b)
    gate.settle()
    assert gate.status(b) == "MERGED"
    assert ("unit", "SUCCESS", "2,1") in gate.history("check")
    assert sorted(changes for _, _, changes in gate.history("gate") if "2,1" in changes) == ["2,1", "2,1"]


def test_a_depends_on_url_to_an_abandoned_change_keeps_the_change_out_of_the_gate_without_a_vote(
        gate: GateHarness) -> None:
    """Zuul's dependent manager (getMissingNeededChanges: an abandoned needed change "can not be merged", abort,
    with no warning to report): B Depends-On A's URL; A abandoned; B approved is not gated, gets no vote and does
    not merge (gatekeeper's sentence without a vote, docs/zuul-compatibility.md)."""
    a = gate.change("org/b", "A")
    b = gate.change("org/a", "B", depends_on=(a,))
    gate.settle()
    gate.sim.abandon(a, "jane", "not needed")
    gate.approve(b)
    gate.settle()
    assert gate.gate_queue() == [] and gate.status(b) == "NEW"
    assert gate.ci_votes(b) == {"Verified": 1}  # check's, from before; the gate gave none
    assert "which is abandoned" in gate.reports(b)[-1]
    assert not gate.history("gate")


def test_a_change_id_depends_on_an_abandoned_change_is_ignored_and_the_change_gates_alone(gate: GateHarness) -> None:
    """Zuul's gerritconnection._updateChange (legacy `Depends-On: I...`: `if dep.open and dep not in
    needs_changes`): the abandoned change is no dependency at all; B is gated alone and merges."""
    a = gate.change("org/b", "A")
    gate.settle()
    gate.sim.abandon(a, "jane", "not needed")
    b = gate.change("org/a", "B", depends_on=(a.change_id,))
    gate.settle()
    gate.approve(b)
    gate.settle()
    assert gate.status(b) == "MERGED"
    assert ("unit", "SUCCESS", "2,1") in gate.history("gate")


def test_check_tests_a_change_on_the_abandoned_change_its_depends_on_url_names(gate: GateHarness) -> None:
    """Zuul's manager.updateCommitDependencies (a URL dependency is kept when `not dep.is_merged`) and independent
    manager (getMissingNeededChanges: "This differs from the dependent pipeline check in not verifying that the
    dependent change is mergable"; enqueueChangesAhead: not live, requirements ignored): B's check runs on A."""
    a = gate.change("org/b", "A")
    gate.settle()
    gate.sim.abandon(a, "jane", "not needed")
    b = gate.change("org/a", "B", depends_on=(a,))
    gate.settle()
    assert check_changes(gate) == ["1,1", "1,1 2,1"]
    assert gate.ci_votes(b) == {"Verified": 1}


def test_a_depends_on_url_of_another_host_is_not_taken_for_a_change_of_this_gerrit(gate: GateHarness) -> None:
    """Zuul's manager.updateCommitDependencies (`source = getSourceByHostname(url.hostname)`; `if not source:
    continue`) and BaseSource.getChangeByURL ("The URL may not correspond to this source"): B's Depends-On names a
    GitHub pull request numbered 1; change 1 of this Gerrit is nothing to B, which is checked alone."""
    gate.change("org/b", "A")
    gate.settle()
    b = gate.change("org/a", "B", depends_on=("https://github.com/example/library/pull/1",))
    gate.settle()
    assert check_changes(gate) == ["1,1", "2,1"]
    assert gate.ci_votes(b) == {"Verified": 1}


# -- the comment trigger -------------------------------------------------------------------------------------------

def reference_recheck() -> re.Pattern:
    layout = parse_layout({str(REFERENCE_LAYOUT): REFERENCE_LAYOUT.read_text()})
    (pattern,) = [p for t in layout.pipelines["check"].triggers for p in t.comments]
    return pattern


def test_the_shared_layouts_recheck_regex_is_the_reference_layouts() -> None:
    """The gate tests below stand for the reference layout's check trigger: its comment regex is the same."""
    assert reference_recheck().pattern == re.search(r"comment: (.*)\n", GATE_LAYOUT).group(1)


def test_a_recheck_after_gerrits_patch_set_and_vote_prefix_runs_check(gate: GateHarness) -> None:
    """Zuul's EventFilter searches the comment regex in Gerrit's comment text, which starts "Patch Set N:" and the
    votes cast with it (Gerrit's stream-events comment-added): Jane's "Patch Set 1: Code-Review+1\\n\\nrecheck"
    runs check again, as the reference layout's multi-line regex finds "recheck" on a line of its own."""
    a = gate.change("org/c")
    gate.settle()
    gate.sim.review(a, "jane", message="recheck", labels={"Code-Review": 1})
    gate.settle()
    (comment,) = [m.message for m in gate.sim.change(a).messages
                  if m.author.username == "jane" and m.message.startswith("Patch Set")]
    assert comment == "Patch Set 1: Code-Review+1\n\nrecheck"
    assert reference_recheck().search(comment)
    assert gate.history("check") == [("unit", "SUCCESS", "1,1")] * 2


def test_recheck_inside_a_sentence_or_the_ci_failure_text_runs_nothing(gate: GateHarness) -> None:
    """Zuul's EventFilter (comment: a regex searched in the comment): the reference layout's regex asks for
    "recheck" alone on a line, so neither a reviewer's sentence mentioning it nor the reference check failure
    message ("Leave a comment saying "recheck" ...") starts a run."""
    a = gate.change("org/c")
    gate.settle()
    gate.comment(a, "Please do not recheck this until the fix lands.")
    gate.settle()
    failure = 'Build failed (check pipeline). Leave a comment saying "recheck" to run the jobs again.'
    assert failure in REFERENCE_LAYOUT.read_text() and not reference_recheck().search(failure)
    gate.comment(a, failure)
    gate.settle()
    assert gate.history("check") == [("unit", "SUCCESS", "1,1")]
