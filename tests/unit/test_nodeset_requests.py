"""A job's nodeset travels in its build request: the scheduler fills it, and a request written before nodesets
(no `nodeset` key) still loads, as a one-node request on its label."""

from __future__ import annotations

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.zk.builds import BuildRequest
from tests.layouts import GATE_LAYOUT
from tests.unit.test_scheduler_manager import Gate

NODEPOOL = """
nodepool:
  labels:
    - name: small
  providers:
    - name: cloud-a
      driver: openstack
      cloud: cloud-a
      images:
        - name: plain
      pools:
        - name: main
          labels:
            - {name: small, image: plain}
nodesets:
  - name: pair
    nodes:
      - {name: controller, label: small}
      - {name: compute1, label: small}
    groups:
      - {name: subnodes, nodes: [compute1]}
"""


def test_the_scheduler_puts_the_jobs_nodeset_in_its_build_request() -> None:
    assert "  - name: unit\n  - name: integration\n" in GATE_LAYOUT
    text = GATE_LAYOUT.replace("  - name: unit\n  - name: integration\n",
                               "  - name: unit\n    nodeset: pair\n  - name: integration\n    label: small\n")
    gate = Gate()
    gate.layout = parse_layout({"layout.yaml": text + NODEPOOL})
    gate.hold = True
    change = gate.change()
    gate.approve(change)
    gate.settle()
    requests = {req.job: req for req in gate.backend.builds.values()}
    assert requests["unit"].nodeset == {"name": "pair",
                                        "nodes": [{"name": "controller", "label": "small"},
                                                  {"name": "compute1", "label": "small"}],
                                        "groups": [{"name": "subnodes", "nodes": ["compute1"]}]}
    assert requests["unit"].label == ""
    assert requests["integration"].nodeset == {} and requests["integration"].label == "small"
    # through ZooKeeper's encoding and back
    assert BuildRequest.from_bytes(requests["unit"].to_bytes()).nodeset == requests["unit"].nodeset


def test_a_request_written_before_nodesets_loads_as_one_node() -> None:
    old = BuildRequest(job="unit", label="small").to_dict()
    del old["nodeset"]
    req = BuildRequest.from_dict(old)
    assert req.nodeset == {} and req.label == "small"


def test_a_malformed_nodeset_is_refused_with_a_sentence() -> None:
    from gatekeeper.executor.multinode import plan_of

    assert plan_of({}) is None
    with pytest.raises(ValueError, match="'pair' has a node without a name or label"):
        plan_of({"name": "pair", "nodes": [{"name": "a"}]})
    with pytest.raises(ValueError, match="names a node twice: a, a"):
        plan_of({"name": "pair", "nodes": [{"name": "a", "label": "x"}, {"name": "a", "label": "x"}]})
    plan = plan_of({"nodes": [{"name": "a", "label": "x"}, {"name": "b", "label": "y"}],
                    "groups": [{"name": "g", "nodes": ["b"]}]})
    assert (plan.names, plan.labels, plan.groups) == (["a", "b"], ["x", "y"], {"g": ["b"]})
