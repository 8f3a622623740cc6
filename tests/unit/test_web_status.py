"""The status document built from pipeline states: order, timing, failing reasons, windows."""

from __future__ import annotations

import time

from gatekeeper.models.pipeline import Build, Change, ChangeQueue, Item, PipelineState
from gatekeeper.web.status import SCHEMA_VERSION, find_item, pipeline_status, status_document

NOW = 1_800_000_000.0


def sample_state(now: float = NOW, log_url: str = "http://logs/1") -> PipelineState:
    """gate: nova 1,1 at the head (tox passed, devstack running for 60 s), glance 2,1 behind it (tox queued)."""
    state = PipelineState(name="gate")
    a = Item(id="item-a", change=Change(project="nova", number=1, patchset=1, subject="Fix <b>boot</b>",
                                        url="http://review/1"),
             queue="integrated", jobs=["tox", "devstack"], enqueued=now - 300, merge_state="ok", changes="1,1")
    a.builds["tox"] = Build(id="build-tox-a", job="tox", result="SUCCESS", start_time=now - 200, end_time=now - 100,
                            log_url=log_url, node={"name": "n1", "label": "debian", "provider": "sim-a"})
    a.builds["devstack"] = Build(id="build-devstack-a", job="devstack", start_time=now - 60,
                                 node={"name": "n2", "label": "debian", "provider": "sim-b"})
    b = Item(id="item-b", change=Change(project="glance", number=2, patchset=1), queue="integrated",
             jobs=["tox", "devstack"], enqueued=now - 100, merge_state="ok", changes="1,1 2,1", ahead=["item-a", 0])
    b.builds["tox"] = Build(id="build-tox-b", job="tox")
    state.items = {a.id: a, b.id: b}
    state.queues = {"integrated": ChangeQueue(name="integrated", items=[a.id, b.id], window=20)}
    return state


def estimates(project: str, job: str) -> float | None:
    return {"devstack": 240.0, "tox": 100.0}.get(job)


def render(state: PipelineState, estimate=estimates) -> dict:
    return pipeline_status("gate", "dependent", "the gate", state, NOW, estimate,
                           lambda b: f"/console/{b}", lambda b: f"/build/{b}")


def test_items_are_listed_head_first_with_their_neighbours():
    gate = render(sample_state())
    items = gate["queues"][0]["items"]
    assert [i["change"]["key"] for i in items] == ["1,1", "2,1"]
    assert items[0]["item_ahead"] is None and items[0]["items_behind"] == ["2,1"]
    assert items[1]["item_ahead"] == "1,1" and items[1]["items_behind"] == []
    assert items[1]["changes"] == "1,1 2,1"
    assert items[0]["resident_time"] == 300


def test_running_job_shows_progress_and_remaining_time_from_history_estimate():
    item = render(sample_state())["queues"][0]["items"][0]
    tox, devstack = item["jobs"]
    assert (tox["state"], tox["result"], tox["elapsed"], tox["build_url"]) == ("completed", "SUCCESS", 100,
                                                                               "/build/build-tox-a")
    assert tox["node"] == {"name": "n1", "label": "debian", "provider": "sim-a"}
    assert devstack["state"] == "running" and devstack["console_url"] == "/console/build-devstack-a"
    assert (devstack["elapsed"], devstack["estimated"], devstack["remaining"], devstack["progress"]) == (60, 240, 180,
                                                                                                       25)
    assert item["remaining_time"] == 180


def test_remaining_time_is_unknown_while_a_job_has_no_history():
    item = render(sample_state(), estimate=lambda p, j: None)["queues"][0]["items"][1]
    assert [j["state"] for j in item["jobs"]] == ["queued", "waiting"]
    assert item["remaining_time"] is None


def test_failed_voting_job_and_merge_conflict_are_failing_reasons_but_nonvoting_is_not():
    state = sample_state()
    a, b = state.items["item-a"], state.items["item-b"]
    a.builds["devstack"] = Build(id="x", job="devstack", result="FAILURE", start_time=NOW - 50, end_time=NOW)
    a.builds["tox"].voting = False
    a.builds["tox"].result = "FAILURE"
    b.merge_state, b.merge_message = "conflict", "nova/setup.py"
    items = render(state)["queues"][0]["items"]
    assert items[0]["failing"] and items[0]["failing_reasons"] == ["devstack: FAILURE"]
    assert items[1]["failing_reasons"] == ["merge conflict: nova/setup.py"]


def test_a_merge_the_merger_gave_up_on_is_shown_as_the_mergers_failure_not_a_conflict():
    state = sample_state()
    b = state.items["item-b"]
    b.merge_state, b.merge_attempts = "conflict", 3
    b.merge_message = "The merger failed 3 times: fetch from review.example.com failed"
    items = render(state)["queues"][0]["items"]
    assert items[1]["failing_reasons"] == ["merger failure (not the change's fault): The merger failed 3 times: fetch "
                                           "from review.example.com failed"]


def test_items_beyond_the_window_are_inactive():
    state = sample_state()
    state.queues["integrated"].window = 1
    assert [i["active"] for i in render(state)["queues"][0]["items"]] == [True, False]


def test_document_carries_schema_version_and_find_item_matches_number_or_key():
    doc = status_document([render(sample_state())], {"management": 0}, now=time.time())
    assert doc["schema"] == SCHEMA_VERSION == 1
    assert [i["pipeline"] for i in find_item(doc, "2")] == ["gate"]
    assert find_item(doc, "2,1")[0]["queue"] == "integrated"
    assert find_item(doc, "3") == [] and find_item(doc, "1,1", pipeline="check") == []


def test_pipeline_without_state_has_no_queues():
    assert render(None)["queues"] == []
