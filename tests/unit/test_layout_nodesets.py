"""Zuul's nodesets in the layout: named or inline, on a job or a branch variant, and each mistake named with its
file and line."""

from __future__ import annotations

import textwrap

from gatekeeper.config.layout import parse_layout
from gatekeeper.config.model import Nodeset, NodesetGroup, NodesetNode
from tests.unit.test_layout import BASE, errors_of

NODESETS = """
nodesets:
  - name: two-node
    nodes:
      - name: controller
        label: small
      - name: compute1
        label: big
    groups:
      - name: subnodes
        nodes: [compute1]
"""

# a second label, offered by the same provider, so that a nodeset can mix labels
TWO_LABELS = BASE.replace("    - name: small\n", "    - name: small\n    - name: big\n").replace(
    "            - {name: small, image: plain}\n",
    "            - {name: small, image: plain}\n            - {name: big, image: plain}\n")


def layout_with(job: str, nodesets: str = NODESETS) -> str:
    """The base layout whose job "unit" is `job` (YAML under `- name: unit`), plus `nodesets`."""
    text = TWO_LABELS.replace("  - name: unit\n    label: small\n", "  - name: unit\n" + job)
    return text + nodesets


def load(text: str):
    return parse_layout({"layout0.yaml": textwrap.dedent(text)}, connections={"gerrit"})


TWO_NODE = Nodeset("two-node", (NodesetNode("controller", "small"), NodesetNode("compute1", "big")),
                   (NodesetGroup("subnodes", ("compute1",)),))


def test_job_names_a_nodeset_defined_after_it():
    layout = load(layout_with("    nodeset: two-node\n"))
    job = layout.jobs["unit"]
    assert job.nodeset == TWO_NODE and job.label is None
    assert layout.nodesets == {"two-node": TWO_NODE}
    assert job.nodeset.to_dict() == {"name": "two-node",
                                     "nodes": [{"name": "controller", "label": "small"},
                                               {"name": "compute1", "label": "big"}],
                                     "groups": [{"name": "subnodes", "nodes": ["compute1"]}]}


def test_inline_nodeset_on_a_job():
    layout = load(layout_with("    nodeset:\n      nodes:\n        - {name: primary, label: small}\n"
                              "        - {name: peer, label: small}\n", nodesets=""))
    assert layout.jobs["unit"].nodeset == Nodeset("", (NodesetNode("primary", "small"),
                                                        NodesetNode("peer", "small")))


def test_branch_variant_swaps_label_and_nodeset_both_ways():
    job = ("    label: small\n    variants:\n      - branches: stable/\n        nodeset: two-node\n"
           "      - branches: stable/old\n        label: big\n")
    unit = load(layout_with(job)).jobs["unit"]
    assert unit.for_branch("master").label == "small" and unit.for_branch("master").nodeset is None
    on_stable = unit.for_branch("stable/2024")
    assert on_stable.nodeset == TWO_NODE and on_stable.label is None
    on_old = unit.for_branch("stable/old")  # both variants apply, the later one wins
    assert on_old.label == "big" and on_old.nodeset is None


def test_a_label_job_carries_no_nodeset():
    assert load(BASE).jobs["unit"].nodeset is None


def test_label_and_nodeset_on_one_job():
    (msg,) = errors_of(layout_with("    label: small\n    nodeset: two-node\n"))
    assert msg == ('layout0.yaml:20: job "unit": gives both label and nodeset: give one (a label is the shorthand '
                   "for a one-node nodeset)")


def test_label_and_nodeset_on_one_variant():
    (msg,) = errors_of(layout_with("    label: small\n    variants:\n      - branches: stable/\n"
                                   "        label: big\n        nodeset: two-node\n"))
    assert msg.startswith('layout0.yaml:23: job "unit" variant 1: gives both label and nodeset')


def test_undefined_nodeset():
    (msg,) = errors_of(layout_with("    nodeset: three-node\n"))
    assert msg == 'layout0.yaml:19: job "unit": undefined nodeset "three-node" (defined: two-node)'


def test_node_label_not_defined():
    (msg,) = errors_of(layout_with("    nodeset: two-node\n", NODESETS.replace("label: big", "label: huge")))
    assert msg == 'layout0.yaml:47: nodeset "two-node" node "compute1": undefined label "huge" (defined: big, small)'


def test_node_label_no_provider_offers():
    text = layout_with("    nodeset: two-node\n").replace(
        "            - {name: big, image: plain}\n", "")
    (msg,) = errors_of(text)
    assert msg.startswith('layout0.yaml:') and msg.endswith('label "big": no provider offers this label')


def test_duplicate_node_names():
    dup = NODESETS.replace("name: compute1", "name: controller").replace("nodes: [compute1]", "nodes: [controller]")
    (msg,) = errors_of(layout_with("    nodeset: two-node\n", dup))
    assert msg == ('layout0.yaml:47: nodeset "two-node": node "controller" is named twice (node names must be '
                   "unique in a nodeset)")


def test_group_naming_an_unknown_node():
    (msg,) = errors_of(layout_with("    nodeset: two-node\n", NODESETS.replace("nodes: [compute1]",
                                                                             "nodes: [compute1, compute2]")))
    assert msg == ("layout0.yaml:50: nodeset \"two-node\": group \"subnodes\" names 'compute2', which is no node of "
                   "this nodeset (its nodes: compute1, controller)")


def test_inline_nodeset_errors_name_the_job():
    job = ("    nodeset:\n      nodes:\n        - {name: a, label: small}\n        - {name: a, label: small}\n"
           "      groups:\n        - {name: g, nodes: [b]}\n")
    msgs = errors_of(layout_with(job, nodesets=""))
    assert msgs == ['layout0.yaml:22: job "unit" nodeset: node "a" is named twice (node names must be unique in a '
                    "nodeset)",
                    "layout0.yaml:24: job \"unit\" nodeset: group \"g\" names 'b', which is no node of this nodeset "
                    "(its nodes: a)"]


def test_nodeset_defined_twice_and_without_nodes():
    twice = NODESETS + NODESETS.replace("nodesets:\n", "")
    msgs = errors_of(layout_with("    nodeset: two-node\n", twice))
    assert msgs == ['layout0.yaml:53: nodeset "two-node": defined twice (first at layout0.yaml:43)']
    (msg,) = errors_of(layout_with("    label: small\n", "nodesets:\n  - name: empty\n    nodes: []\n"))
    assert "needs at least one node" in msg and msg.startswith("layout0.yaml:")
