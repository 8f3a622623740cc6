"""The build contract between scheduler and executor (gatekeeper.zk.builds) on a real ZooKeeper."""

from __future__ import annotations

from gatekeeper.zk import builds, paths
from gatekeeper.zk.builds import BuildRequest, BuildResult


def request(**kw) -> BuildRequest:
    fields = {"pipeline": "gate", "item": "i1", "job": "unit", "changes": "1,1 2,1", "label": "ubuntu-noble",
              "priority": [0, 1], **kw}
    return BuildRequest(**fields)


def test_a_claimed_build_is_taken_by_one_executor_and_its_result_replaces_the_request(zk, zk_factory) -> None:
    other = zk_factory()
    builds.ensure_paths(zk)
    zk.client.ensure_path(paths.lock("build"))
    req = request()
    builds.submit_build(zk, req)
    claimed = builds.claim_build(zk, req.id, "executor-1")
    assert claimed is not None and claimed[1] == req
    assert builds.claim_build(other, req.id, "executor-2") is None  # held by executor-1
    assert builds.complete_build(zk, BuildResult(id=req.id, pipeline="gate", item="i1", job="unit",
                                                 result=builds.SUCCESS, log_url="https://logs/1"))
    builds.release_claim(zk, req.id, claimed[0])
    assert builds.pending_builds(zk) == [] and builds.finished_builds(zk) == [req.id]
    result = builds.read_build_result(zk, req.id)
    assert (result.result, result.log_url) == ("SUCCESS", "https://logs/1")
    assert builds.finished_builds(zk) == [] and not zk.client.exists(paths.lock("build", req.id))


def test_a_cancelled_build_cannot_be_claimed_or_completed(zk) -> None:
    builds.ensure_paths(zk)
    waiting, running = request(), request()
    builds.submit_build(zk, waiting)
    builds.submit_build(zk, running)
    lock, _ = builds.claim_build(zk, running.id, "executor-1")
    assert builds.cancel_build(zk, waiting.id) and builds.cancel_build(zk, running.id)
    assert builds.claim_build(zk, waiting.id, "executor-1") is None
    assert not builds.request_exists(zk, running.id)  # what a running build checks to abort
    assert not builds.complete_build(zk, BuildResult(id=running.id, result=builds.ABORTED))
    builds.release_claim(zk, running.id, lock)
    assert builds.finished_builds(zk) == []


def test_requests_sort_by_pipeline_precedence_then_queue_position() -> None:
    gate_head = request(priority=[0, 0])
    gate_tail = request(priority=[0, 7])
    check = request(priority=[1, 0])
    assert sorted([check, gate_tail, gate_head], key=lambda r: r.sort_key) == [gate_head, gate_tail, check]
    again = BuildRequest.from_bytes(gate_tail.to_bytes())
    assert again == gate_tail and again.sort_key == gate_tail.sort_key
