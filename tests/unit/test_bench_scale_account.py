"""bench/scale.py refuses figures from a run that lost a change or reported one twice: the accounting it uses
(ScaleRig.account, read from Gerrit's change messages) and the refusal built on it, on changes made to look so."""

from __future__ import annotations

import importlib.util
import os
from types import SimpleNamespace

from tests.functional.scale_rig import CI, START_MESSAGE, SUCCESS_MESSAGE, ScaleRig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_scale", os.path.join(ROOT, "bench", "scale.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def change(number: int, status: str, *messages: tuple[str, str]):
    return SimpleNamespace(number=number, status=status, messages=[
        SimpleNamespace(author=SimpleNamespace(username=who), message=text) for who, text in messages])


def account(*changes):
    by_number = {c.number: c for c in changes}
    gerrit = SimpleNamespace(change=lambda n: by_number[n])
    return ScaleRig.account(SimpleNamespace(gerrit=gerrit), list(by_number))


def test_a_clean_run_is_accepted() -> None:
    bench = load_bench()
    counted = account(change(1, "MERGED", (CI, START_MESSAGE), (CI, SUCCESS_MESSAGE)),
                      change(2, "MERGED", ("jane", START_MESSAGE), (CI, START_MESSAGE), (CI, SUCCESS_MESSAGE)))
    assert (counted.merged, counted.lost, counted.double_reports) == (2, 0, 0)
    assert bench.problems(True, counted, []) == []


def test_a_lost_change_a_double_report_and_a_dead_service_are_each_refused() -> None:
    bench = load_bench()
    counted = account(change(1, "MERGED", (CI, START_MESSAGE), (CI, SUCCESS_MESSAGE), (CI, SUCCESS_MESSAGE)),
                      change(2, "NEW", (CI, START_MESSAGE)),
                      change(3, "MERGED", (CI, START_MESSAGE), (CI, START_MESSAGE), (CI, SUCCESS_MESSAGE)))
    assert (counted.merged, counted.lost, counted.double_reports, counted.not_merged) == (2, 1, 2, [2])
    found = bench.problems(False, counted, ["executor-1"])
    assert found == ["changes not merged: [2]", "2 reports sent twice", "service processes died: ['executor-1']"]
