"""Layout loading: the reference layout is valid, and each kind of mistake gets its own precise message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gatekeeper.config.layout import load_layout, parse_layout
from gatekeeper.config.yamlfile import ConfigErrors

REPO = Path(__file__).resolve().parents[2]

BASE = """
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
  - name: gate
    manager: dependent
    trigger:
      gerrit:
        - event: comment-added
          approval:
            - Approved: 1
queues:
  - name: integrated
jobs:
  - name: unit
    label: small
projects:
  - name: org/a
    queue: integrated
    pipelines:
      check: [unit]
      gate: [unit]
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
"""


def errors_of(*texts: str, names: tuple[str, ...] = ()) -> list[str]:
    files = {names[i] if i < len(names) else f"layout{i}.yaml": textwrap.dedent(t) for i, t in enumerate(texts)}
    with pytest.raises(ConfigErrors) as exc:
        parse_layout(files, connections={"gerrit"})
    return [str(e) for e in exc.value.errors]


def replace(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


def test_reference_layout_is_valid():
    layout = load_layout(REPO / "layouts", connections={"gerrit"})
    assert set(layout.pipelines) == {"check", "gate"}
    gate = layout.pipelines["gate"]
    assert gate.dependent and gate.precedence == "high"
    assert gate.reports["success"].submit and gate.reports["success"].labels == {"Verified": 2}
    assert gate.reports["failure"].labels == {"Verified": -2}
    assert gate.require.approvals == ({"Code-Review": 2}, {"Approved": 1})
    reference = {
        "openstack/nova", "openstack/glance", "openstack/keystone", "openstack/horizon",
        "openstack/python-novaclient", "openstack/python-keystoneclient", "openstack-dev/devstack",
        "openstack-infra/devstack-gate",
    }
    assert set(layout.projects) == reference
    assert {p.queue for p in layout.projects.values()} == {"integrated"}
    assert all("devstack" in p.jobs_for("gate") for p in layout.projects.values())
    check = layout.pipelines["check"]
    assert any(t.comments and t.comments[0].search("recheck") for t in check.triggers)
    assert set(layout.nodepool.providers) == {"cloud-a", "cloud-b"}
    assert all(p.labels == {"ubuntu-jammy", "ubuntu-noble"} for p in layout.nodepool.providers.values())


def test_base_fixture_is_valid():
    layout = parse_layout({"l.yaml": BASE}, connections={"gerrit"})
    assert layout.summary() == "2 pipelines, 1 queues, 1 jobs, 1 projects, 1 node labels, 1 providers"


def test_invalid_yaml_names_file_and_line():
    assert errors_of("pipelines:\n  - name: check\n    manager: [independent\n") == [
        "layout0.yaml:4: invalid YAML: while parsing a flow sequence, expected ',' or ']', but got '<stream end>'"
    ]


def test_duplicate_key_in_one_mapping():
    (msg,) = errors_of("jobs:\n  - name: a\n    name: b\n")
    assert msg == 'layout0.yaml:3: invalid YAML: duplicate key "name"'


def test_unknown_top_level_key():
    assert errors_of(BASE + "pipeline: []\n") == ['layout0.yaml:39: top level: unknown key "pipeline"']


def test_unknown_key_in_pipeline():
    (msg,) = errors_of(replace("    manager: independent", "    manager: independent\n    windw: 3"))
    assert msg == 'layout0.yaml:5: pipelines[0] (check): unknown key "windw"'


def test_unknown_pipeline_manager():
    (msg,) = errors_of(replace("manager: dependent", "manager: serial-ish"))
    assert msg == (
        "layout0.yaml:9: pipelines[1] (gate).manager: unknown manager (expected independent, dependent, serial or "
        "supercedent)"
    )


def test_missing_required_manager():
    (msg,) = errors_of(replace("    manager: independent\n", ""))
    assert msg == 'layout0.yaml:3: pipelines[0] (check): missing required key "manager"'


def test_wrong_type_for_timeout():
    (msg,) = errors_of(replace("    label: small", "    label: small\n    timeout: soon"))
    assert msg.startswith("layout0.yaml:20: jobs[0] (unit).timeout: expected an integer, got a string")
    assert "'soon'" in msg


def test_negative_timeout():
    (msg,) = errors_of(replace("    label: small", "    label: small\n    timeout: -5"))
    assert msg == "layout0.yaml:20: jobs[0] (unit).timeout: must be a positive number of seconds"


def test_unknown_trigger_event():
    (msg,) = errors_of(replace("event: patchset-created", "event: patchset-uploaded"))
    assert msg.startswith("layout0.yaml:7: pipelines[0] (check).trigger.gerrit[0].event: unknown Gerrit event")


def test_bad_comment_regex():
    recheck = "        - event: comment-added\n          comment: '(recheck'"
    (msg,) = errors_of(replace("        - event: patchset-created", recheck))
    assert msg.startswith("layout0.yaml:8: pipelines[0] (check).trigger.gerrit[0].comment: bad regular expression")
    assert "missing ), unterminated subpattern" in msg


@pytest.mark.parametrize("key", ["username", "email"])
def test_a_triggers_username_and_email_filters_are_regular_expressions(key):
    filtered = f"        - event: patchset-created\n          {key}: ['^jane$', '(@example']"
    (msg,) = errors_of(replace("        - event: patchset-created", filtered))
    assert msg.startswith(f"layout0.yaml:8: pipelines[0] (check).trigger.gerrit[0].{key}[1]: bad regular "
                          "expression '(@example'")


def test_approval_vote_must_be_an_integer():
    (msg,) = errors_of(replace("            - Approved: 1", "            - Approved: yes"))
    assert "pipelines[1] (gate).trigger.gerrit[0].approval[0]: vote for Approved must be an integer" in msg


def test_reject_and_approval_filters_are_read_and_checked():
    gate = """    manager: dependent
    require:
      approval: [{Code-Review: 2, username: ^core-}]
    reject:
      approval: [{Code-Review: -2}, {Verified: [-1, -2], username: ^ci$}]"""
    layout = parse_layout({"l.yaml": replace("    manager: dependent", gate)}, connections={"gerrit"})
    req = layout.pipelines["gate"].require
    assert req.approvals == ({"Code-Review": 2, "username": "^core-"},)
    assert req.reject_approvals == ({"Code-Review": -2}, {"Verified": [-1, -2], "username": "^ci$"})
    bad = gate.replace("[-1, -2], username: ^ci$}", "[-1, x]}, {username: ^me$}").replace("^core-", "(")
    msgs = errors_of(replace("    manager: dependent", bad))
    assert any("require.approval[0]: bad regular expression '('" in m for m in msgs), msgs
    assert any("reject.approval[1]: vote for Verified must be an integer or a list of integers" in m
               for m in msgs), msgs
    assert any("reject.approval[2]: names no label" in m for m in msgs), msgs


def test_negative_window():
    (msg,) = errors_of(replace("    manager: dependent", "    manager: dependent\n    window:\n      initial: -1"))
    assert msg == "layout0.yaml:11: pipelines[1] (gate).window.initial: must not be negative (0: no limit)"


def test_window_floor_above_initial():
    (msg,) = errors_of(replace("    manager: dependent", "    manager: dependent\n    window: {initial: 2, floor: 5}"))
    assert msg == 'layout0.yaml:10: pipeline "gate": window floor 5 is above its initial size 2'


def test_window_on_independent_pipeline():
    (msg,) = errors_of(replace("    manager: independent", "    manager: independent\n    window: {initial: 5}"))
    assert msg == 'layout0.yaml:5: pipeline "check": a window applies only to a dependent pipeline'


def test_undefined_job_referenced_by_project():
    (msg,) = errors_of(replace("      gate: [unit]", "      gate: [unit, integration]"))
    assert msg == 'layout0.yaml:25: project "org/a" pipeline gate: undefined job "integration" (defined: unit)'


def test_undefined_pipeline_referenced_by_project():
    (msg,) = errors_of(replace("      gate: [unit]", "      gate: [unit]\n      post: [unit]"))
    assert msg == 'layout0.yaml:26: project "org/a": undefined pipeline "post" (defined: check, gate)'


def test_undefined_queue():
    (msg,) = errors_of(replace("    queue: integrated", "    queue: intergrated"))
    assert msg == 'layout0.yaml:22: project "org/a": undefined queue "intergrated" (defined: integrated)'


def test_project_in_two_queues():
    other = """
    queues:
      - name: other
    projects:
      - name: org/a
        queue: other
    """
    (msg,) = errors_of(BASE, other, names=("base.yaml", "extra.yaml"))
    assert msg == 'extra.yaml:6: project "org/a": project in two queues: "integrated" (base.yaml:21) and "other"'


def test_project_in_dependent_pipeline_without_queue_gets_an_implicit_queue_of_its_own():
    layout = parse_layout({"layout0.yaml": textwrap.dedent(replace("    queue: integrated\n", ""))},
                          connections={"gerrit"})
    assert layout.projects["org/a"].queue is None  # as written
    assert layout.queue_of("org/a") == "org/a"  # as Zuul: a queue of its own, named after the project
    assert "org/a" not in layout.queues


def test_duplicate_job_across_files():
    (msg,) = errors_of(BASE, "jobs:\n  - name: unit\n", names=("a.yaml", "b.yaml"))
    assert msg == 'b.yaml:2: job "unit": defined twice (first at a.yaml:18)'


def test_duplicate_pipeline_across_files():
    (msg,) = errors_of(BASE, "pipelines:\n  - name: gate\n    manager: dependent\n", names=("a.yaml", "b.yaml"))
    assert msg == 'b.yaml:2: pipeline "gate": defined twice (first at a.yaml:8)'


def test_job_label_that_is_not_defined():
    (msg,) = errors_of(replace("    label: small", "    label: huge"))
    assert msg == 'layout0.yaml:19: job "unit": undefined label "huge" (defined: small)'


def test_label_with_no_provider_offering_it():
    (msg,) = errors_of(replace("    - name: small\n", "    - name: small\n    - name: gpu\n      min-ready: 1\n"))
    assert msg == 'layout0.yaml:29: label "gpu": no provider offers this label'


def test_pool_label_using_undefined_image():
    (msg,) = errors_of(replace("{name: small, image: plain}", "{name: small, image: fancy}"))
    assert msg == (
        'layout0.yaml:38: provider "cloud-a" pool "main": label "small" uses image "fancy", '
        "which this provider does not define (defined: plain)"
    )


def test_openstack_provider_without_cloud():
    (msg,) = errors_of(replace("      cloud: cloud-a\n", ""))
    assert msg == 'layout0.yaml:30: provider "cloud-a": an openstack provider needs "cloud" (its name in clouds.yaml)'


def test_unknown_provider_driver():
    (msg,) = errors_of(replace("driver: openstack", "driver: ec2"))
    assert msg == (
        "layout0.yaml:31: nodepool.providers[0] (cloud-a).driver: unknown driver (expected openstack or static)"
    )


def test_negative_min_ready():
    (msg,) = errors_of(replace("    - name: small\n", "    - name: small\n      min-ready: -2\n"))
    assert msg == "layout0.yaml:29: nodepool.labels[0] (small).min-ready: must not be negative, except -1 (disabled)"


def test_trigger_on_unknown_connection():
    text = replace("      gerrit:\n        - event: patchset", "      github:\n        - event: patchset")
    (msg,) = errors_of(text)
    assert msg == 'layout0.yaml:6: pipeline "check": trigger names unknown connection "github" (known: gerrit)'


def test_pipelines_must_be_a_list():
    (msg,) = errors_of("pipelines:\n  name: check\n")
    assert msg == "layout0.yaml:1: pipelines: expected a list, got a mapping {'name': 'check'}"


def test_every_error_is_reported_not_just_the_first():
    text = replace("manager: dependent", "manager: serial-ish")
    text = text.replace("    label: small", "    label: small\n    voting: maybe")
    msgs = errors_of(text)
    assert len(msgs) == 2
    assert "unknown manager" in msgs[0]
    assert "jobs[0] (unit).voting: expected true or false, got a string 'maybe'" in msgs[1]


def test_static_provider_and_project_defined_in_two_files_merge():
    extra = """
    projects:
      - name: org/a
        pipelines:
          check: [lint]
    jobs:
      - name: lint
    nodepool:
      providers:
        - name: lab
          driver: static
          hosts:
            - {name: box1, address: 127.0.0.5, labels: [small],
               host-key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"}
    """
    layout = parse_layout({"a.yaml": BASE, "b.yaml": textwrap.dedent(extra)}, connections={"gerrit"})
    assert layout.projects["org/a"].jobs_for("check") == ("unit", "lint")
    assert layout.projects["org/a"].queue == "integrated"
    lab = layout.nodepool.providers["lab"]
    assert lab.max_servers == 1 and lab.hosts[0].address == "127.0.0.5" and lab.labels == {"small"}


def test_static_hosts_take_nodepools_connection_port_and_max_parallel_jobs():
    extra = """
    nodepool:
      providers:
        - name: lab
          driver: static
          hosts:
            - {name: box1, address: 127.0.0.5, connection-port: 2222, labels: [small], max-parallel-jobs: 3,
               host-key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"}
            - {name: box2, address: 127.0.0.6, labels: small}
    """
    lab = parse_layout({"a.yaml": BASE, "b.yaml": textwrap.dedent(extra)}, connections={"gerrit"}) \
        .nodepool.providers["lab"]
    assert [(h.port, h.max_parallel_jobs, h.labels) for h in lab.hosts] == [(2222, 3, ("small",)),
                                                                            (22, 1, ("small",))]  # one label: a str
    assert lab.max_servers == 4  # by default, every job slot of every host


def test_a_static_hosts_key_that_logins_could_not_read_and_max_parallel_jobs_zero_are_refused():
    extra = """
    nodepool:
      providers:
        - name: lab
          driver: static
          hosts:
            - {name: box1, address: 127.0.0.5, labels: [small], host-key: fake-key, max-parallel-jobs: 0}
            - {name: box2, address: 127.0.0.6, labels: [small],
               host-key: "ssh-foo AAAA"}
            - {name: box3, address: 127.0.0.7, labels: [small], host-key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"}
            - {name: box4, address: 127.0.0.8, labels: [small],
               host-key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f box4"}
    """
    assert errors_of(BASE, extra) == [
        "layout1.yaml:7: nodepool.providers[0] (lab).hosts[0] (box1).host-key: the key 'fake-key' is not \"TYPE "
        "BASE64\" (such as a line of ssh-keyscan's output without the host)",
        "layout1.yaml:7: nodepool.providers[0] (lab).hosts[0] (box1).max-parallel-jobs: must be at least 1",
        "layout1.yaml:9: nodepool.providers[0] (lab).hosts[1] (box2).host-key: the key is of unknown type 'ssh-foo'",
        "layout1.yaml:10: nodepool.providers[0] (lab).hosts[2] (box3).host-key: the key is not a valid key of type "
        "ssh-ed25519",
    ]  # box4's key (with a comment after it, as ssh-keyscan may print) is taken


def test_nodepools_spellings_and_ours_of_one_setting_are_refused_together():
    extra = """
    nodepool:
      providers:
        - name: lab
          driver: static
          hosts:
            - {name: box1, address: 127.0.0.5, labels: [small], port: 2222,
               connection-port: 22}
          pools:
            - name: main
              nodes:
                - {name: 127.0.0.6, labels: small, port: 2222, connection-port: 22}
        - name: cloud-z
          driver: openstack
          cloud: z
          region: RegionOne
          region-name: RegionTwo
          images:
            - {name: jammy, base-image: ubuntu-22.04}
          pools:
            - name: main
              labels:
                - {name: small, image: jammy, flavor: m1.large, flavor-name: m1.small}
    """
    assert errors_of(BASE, extra) == [
        'layout1.yaml:8: provider "lab" static host "box1": give "port" or Nodepool\'s "connection-port", not both',
        'layout1.yaml:12: provider "lab" static host "127.0.0.6": give "port" or Nodepool\'s "connection-port", not '
        "both",  # a node of a pool, as Nodepool lists them, as well
        'layout1.yaml:17: provider "cloud-z": give "region" or Nodepool\'s "region-name", not both',
        'layout1.yaml:23: provider "cloud-z" pool "main" label "small": give "flavor" or Nodepool\'s "flavor-name", '
        "not both",
    ]


def test_nodepools_launch_retries_is_launch_attempts_and_both_at_once_are_refused():
    extra = """
    nodepool:
      providers:
        - name: lab
          driver: static
          launch-retries: 5
          hosts:
            - {name: box1, address: 127.0.0.5, labels: [small]}
    """
    layout = parse_layout({"a.yaml": BASE, "b.yaml": textwrap.dedent(extra)}, connections={"gerrit"})
    assert layout.nodepool.providers["lab"].launch_attempts == 5
    both = extra.replace("launch-retries: 5", "launch-retries: 5\n          launch-attempts: 2")
    assert errors_of(BASE, both) == [
        'layout1.yaml:6: provider "lab": give "launch-attempts" or Nodepool\'s "launch-retries", not both']


def test_a_pool_label_names_exactly_one_image_by_gatekeepers_or_nodepools_key():
    extra = """
    nodepool:
      providers:
        - name: cloud-z
          driver: openstack
          cloud: z
          region-name: RegionTwo
          cloud-images:
            - {name: jammy, image-id: 0f1e2d}
          images:
            - {name: jammy, base-image: ubuntu-22.04}
          pools:
            - name: main
              labels:
                - {name: small, cloud-image: jammy, flavor-name: m1.small}
                - {name: small, image: jammy, diskimage: jammy}
                - {name: small}
    """
    assert errors_of(BASE, extra) == [
        'layout1.yaml:9: provider "cloud-z": image "jammy" is defined twice',
        'layout1.yaml:16: provider "cloud-z" pool "main": label "small" needs one image: "image" (or Nodepool\'s '
        '"cloud-image" or "diskimage")',
        'layout1.yaml:17: provider "cloud-z" pool "main": label "small" needs one image: "image" (or Nodepool\'s '
        '"cloud-image" or "diskimage")',
    ]
    fine = extra.replace("            - {name: jammy, base-image: ubuntu-22.04}\n", "").replace(
        "                - {name: small, image: jammy, diskimage: jammy}\n                - {name: small}\n", "")
    provider = parse_layout({"a.yaml": BASE, "b.yaml": textwrap.dedent(fine.replace("images:\n          pools",
                                                                                     "pools"))},
                            connections={"gerrit"}).nodepool.providers["cloud-z"]
    assert [(i.name, i.base_image, i.prepare) for i in provider.images] == [("jammy", "0f1e2d", "")]
    assert provider.region == "RegionTwo"
    assert [(pl.image, pl.flavor) for pl in provider.pools[0].labels] == [("jammy", "m1.small")]


def test_a_static_host_named_twice_in_a_provider_is_refused():
    extra = """
    nodepool:
      providers:
        - name: lab
          driver: static
          hosts:
            - {name: box1, address: 127.0.0.5, labels: [small]}
            - {name: box1, address: 127.0.0.6, labels: [small]}
    """
    assert errors_of(BASE, extra) == ['layout1.yaml:8: provider "lab": static host "box1" is listed twice']


def test_nodepools_static_pools_of_nodes_are_static_hosts_and_what_gatekeeper_does_not_do_is_refused():
    nodepool_example = """
    nodepool:
      providers:
        - name: static-rack
          driver: static
          pools:
            - name: main
              nodes:
                - name: trusty.example.com
                  labels: small
                  timeout: 13
                  connection-port: 22022
                  host-key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"
                  max-parallel-jobs: 2
    """
    rack = parse_layout({"a.yaml": BASE, "b.yaml": textwrap.dedent(nodepool_example)}, connections={"gerrit"}) \
        .nodepool.providers["static-rack"]
    [host] = rack.hosts
    assert (host.name, host.address, host.port, host.username, host.timeout, host.max_parallel_jobs) == (
        "trusty.example.com", "trusty.example.com", 22022, "zuul", 13, 2)  # Nodepool's default user, zuul
    assert rack.pools == () and rack.max_servers == 2
    assert host.host_key.startswith("ssh-ed25519 AAAAC3")
    # a node's key is read as a host's is: one no login could read is refused
    refused = nodepool_example.replace("timeout: 13", "host-key-checking: false").replace(
        "AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f", "AAAA").replace(
        "            - name: main\n", "            - name: main\n              max-servers: 3\n")
    openstack = """
    nodepool:
      providers:
        - name: cloud-z
          driver: openstack
          cloud: z
          images: [{name: jammy}]
          pools:
            - name: main
              nodes: [{name: box, labels: [small]}]
    """
    assert errors_of(BASE, refused, openstack) == [
        "layout1.yaml:12: nodepool.providers[0] (static-rack).pools[0] (main).nodes[0] (trusty.example.com)"
        ".host-key-checking: cannot be false: every node's host key is pinned and checked",
        "layout1.yaml:14: nodepool.providers[0] (static-rack).pools[0] (main).nodes[0] (trusty.example.com)"
        ".host-key: the key is not a valid key of type ssh-ed25519",
        'layout2.yaml:10: provider "cloud-z" pool "main": an openstack provider\'s pool lists "labels" ("nodes" are '
        "a static provider's)",
    ]
    assert errors_of(BASE, nodepool_example.replace("            - name: main\n",
                                                    "            - name: main\n              max-servers: 3\n")) == [
        'layout1.yaml:8: provider "static-rack" pool "main": a static provider\'s pool lists only "nodes" (its hosts, '
        "as Nodepool's static driver); not max-servers"]


def test_missing_layout_directory(tmp_path):
    with pytest.raises(ConfigErrors, match="no such layout file or directory"):
        load_layout(tmp_path / "nope")
    with pytest.raises(ConfigErrors, match="no layout files"):
        load_layout(tmp_path)


def test_shape_errors_and_reference_errors_are_listed_together():
    """A job with a bad key is left out and named once; a project naming a job nobody defined is named too, in
    the same run, while the project naming the bad job is not blamed for it."""
    extra = """
    jobs:
      - name: lint
        timeout: soon
    projects:
      - name: org/b
        pipelines:
          check: [lint, docs]
    nodepool:
      providers:
        - name: cloud-b
          driver: static
          hosts:
            - {name: h1, labels: [medium]}
    """
    assert errors_of(BASE, extra) == [
        "layout1.yaml:4: jobs[0] (lint).timeout: expected an integer, got a string 'soon'",
        'layout1.yaml:8: project "org/b" pipeline check: undefined job "docs" (defined: unit)',
        'layout1.yaml:14: nodepool.providers[0] (cloud-b).hosts[0] (h1): missing required key "address"',
    ]


def test_empty_items_and_deep_nesting_are_errors_not_crashes():
    assert errors_of("pipelines: [null]\n", "jobs: " + "[" * 5000 + "]" * 5000 + "\n") == [
        "layout0.yaml:1: pipelines[0]: expected a mapping, got an empty value None",
        "layout1.yaml:1: invalid YAML: nested too deeply to read",
    ]


def test_every_bad_signature_is_listed():
    extra = """
    signatures:
      - {id: 1, title: a, pattern: "(("}
      - {id: 2, title: "", pattern: x}
    """
    errors = errors_of(BASE, extra)
    assert len(errors) == 2, errors
    assert errors[0].startswith("layout1.yaml:3: signatures[0].pattern: bad regular expression '(('")
    assert errors[1].startswith("layout1.yaml:4: signatures[1].title: ")


# -- files and irrelevant-files (Zuul's job file matchers) ----------------------------------------------------------
def matcher_layout(settings: str, variant: str = "") -> dict:
    """The BASE layout with `settings` on job unit (and a stable/ variant with `variant`, if given)."""
    extra = f"\n    variants:\n      - branches: stable/\n        {variant}" if variant else ""
    layout = parse_layout({"layout.yaml": replace("    label: small", f"    label: small\n    {settings}{extra}")},
                          connections={"gerrit"})
    return layout.jobs


def runs(settings: str, files: list[str] | None, branch: str = "master", variant: str = "") -> bool:
    return matcher_layout(settings, variant)["unit"].runs_for(branch, files)


def test_files_match_at_the_start_of_a_path_not_at_its_end():
    assert runs("files: ['^nova/']", ["nova/api.py"])
    assert runs("files: ['nova/']", ["nova/api.py", "README"])
    assert not runs("files: ['nova/']", ["README", "doc/nova/index.rst"])  # re.match: anchored at the start only
    assert runs("files: ['doc/.*']", ["doc/nova/index.rst"])
    assert runs("files: ['nova']", ["nova_tests/x.py"])  # not anchored at the end


def test_files_takes_one_pattern_or_a_list():
    assert matcher_layout("files: '^nova/'")["unit"].files == matcher_layout("files: ['^nova/']")["unit"].files
    assert runs("files: '^nova/'", ["nova/api.py"]) and not runs("files: '^nova/'", ["README"])
    assert runs("irrelevant-files: '^doc/'", ["nova/api.py"]) and not runs("irrelevant-files: '^doc/'", ["doc/x"])


def test_irrelevant_files_skip_a_job_only_when_every_file_is_irrelevant():
    assert not runs("irrelevant-files: ['^doc/.*$', '^README$']", ["doc/index.rst", "README"])
    assert runs("irrelevant-files: ['^doc/.*$', '^README$']", ["doc/index.rst", "nova/api.py"])
    assert runs("irrelevant-files: ['^doc/.*$']", ["README.doc/x"])


def test_the_commit_message_and_merge_list_are_no_files():
    assert not runs("files: ['.*']", ["/COMMIT_MSG"])
    assert not runs("files: ['.*']", ["/COMMIT_MSG", "/MERGE_LIST"])
    assert runs("files: ['.*']", ["/COMMIT_MSG", "setup.py"])
    # a change touching only its commit message is all irrelevant, whatever the patterns
    assert not runs("irrelevant-files: ['^doc/']", ["/COMMIT_MSG"])
    assert runs("irrelevant-files: ['^/COMMIT_MSG$']", ["/COMMIT_MSG", "setup.py"])


def test_a_job_runs_when_the_changed_files_are_not_known():
    for settings in ("files: ['^nova/']", "irrelevant-files: ['.*']", "files: [x]\n    irrelevant-files: [x]"):
        assert runs(settings, None) and runs(settings, [])


def test_files_and_irrelevant_files_on_one_job_must_both_let_it_run():
    both = "files: ['^nova/']\n    irrelevant-files: ['^nova/tests/']"
    assert runs(both, ["nova/api.py"])
    assert not runs(both, ["nova/tests/test_api.py"])
    assert not runs(both, ["README"])
    assert runs(both, ["nova/tests/test_api.py", "nova/api.py"])


def test_a_job_without_matchers_runs_for_any_files_and_the_branch_still_decides():
    assert runs("timeout: 60", ["README"]) and runs("timeout: 60", ["/COMMIT_MSG"])
    assert not runs("branches: stable/\n    files: ['.*']", ["nova/api.py"], branch="master")
    assert runs("branches: stable/\n    files: ['.*']", ["nova/api.py"], branch="stable/2024.1")


def test_a_variant_overrides_the_matchers_on_its_branches():
    settings, variant = "irrelevant-files: ['^doc/']", "files: ['^nova/']"
    assert not runs(settings, ["doc/x"], variant=variant)
    assert runs(settings, ["README"], variant=variant)
    assert runs(settings, ["doc/x", "nova/api.py"], branch="stable/2024.1", variant=variant)
    assert not runs(settings, ["README"], branch="stable/2024.1", variant=variant)
    # a variant replaces only the matchers it gives: the job's irrelevant-files still hold on stable
    assert not runs(settings, ["doc/x"], branch="stable/2024.1", variant="files: ['.*']")
    job = matcher_layout(settings, "irrelevant-files: ['^releasenotes/']")["unit"]
    assert job.runs_for("stable/2024.1", ["doc/x"]) and not job.runs_for("stable/2024.1", ["releasenotes/x"])
    assert not job.runs_for("master", ["doc/x"]) and job.runs_for("master", ["releasenotes/x"])


def test_the_project_lists_the_jobs_the_files_select():
    jobs = matcher_layout("files: ['^nova/']")
    layout = parse_layout({"layout.yaml": replace("    label: small", "    label: small\n    files: ['^nova/']")},
                          connections={"gerrit"})
    assert layout.projects["org/a"].jobs_on_branch("gate", "master", jobs, ["nova/api.py"]) == ("unit",)
    assert layout.projects["org/a"].jobs_on_branch("gate", "master", jobs, ["README"]) == ()
    assert layout.projects["org/a"].jobs_on_branch("gate", "master", jobs) == ("unit",)


def test_a_file_pattern_that_is_no_regular_expression_is_refused_with_file_line_and_job():
    (msg,) = errors_of(replace("    label: small", "    label: small\n    files: ['^nova/(']"))
    assert msg.startswith("layout0.yaml:20: job \"unit\": files: '^nova/(' is not a regular expression (")
    (msg,) = errors_of(replace("    label: small", "    label: small\n    irrelevant-files: '[doc'"))
    assert msg.startswith("layout0.yaml:20: job \"unit\": irrelevant-files: '[doc' is not a regular expression (")
    (msg,) = errors_of(replace("    label: small", "    label: small\n    variants:\n      - branches: stable/\n"
                                                   "        files: ['(']"))
    assert msg.startswith("layout0.yaml:22: job \"unit\": files: '(' is not a regular expression (")


def test_a_file_pattern_must_be_a_string():
    (msg,) = errors_of(replace("    label: small", "    label: small\n    files: [3]"))
    assert msg == "layout0.yaml:20: jobs[0] (unit).files: expected a file pattern or a list of them, got a list [3]"


# -- job dependencies ----------------------------------------------------------------------------------------------
DEP_JOBS = """jobs:
  - name: unit
    label: small
  - name: image
  - name: docs
"""


def deps_layout(unit: str = "", image: str = "", docs: str = "", gate: str = "[unit, image, docs]",
                check: str = "[unit, image, docs]") -> str:
    """BASE with jobs image and docs beside unit, each with the settings given, and org/a's lists `check`, `gate`."""
    text = replace("jobs:\n  - name: unit\n    label: small\n", DEP_JOBS)
    for job, settings in (("docs", docs), ("image", image), ("unit", unit)):
        if settings:
            text = text.replace(f"  - name: {job}\n", f"  - name: {job}\n    {settings}\n", 1)
    text = text.replace("      check: [unit]\n", f"      check: {check}\n", 1)
    return text.replace("      gate: [unit]\n", f"      gate: {gate}\n", 1)


def test_job_dependencies_are_read_from_a_name_a_list_and_soft_mappings():
    jobs = parse_layout({"layout.yaml": deps_layout(unit="dependencies: image",
                                                    docs="dependencies: [image, {name: unit, soft: true}]")},
                        connections={"gerrit"}).jobs
    assert [(d.name, d.soft) for d in jobs["unit"].dependencies] == [("image", False)]
    assert [(d.name, d.soft) for d in jobs["docs"].dependencies] == [("image", False), ("unit", True)]
    assert jobs["image"].dependencies == ()
    soft = parse_layout({"layout.yaml": deps_layout(unit="dependencies: [{name: image}]")}, connections={"gerrit"})
    assert [(d.name, d.soft) for d in soft.jobs["unit"].dependencies] == [("image", False)]


def test_a_dependency_on_an_undefined_job_is_refused_with_file_line_and_job():
    assert errors_of(deps_layout(docs="dependencies: [image, {name: lint, soft: true}, build]")) == [
        'layout0.yaml:22: job "docs" dependencies: undefined job "build" (defined: docs, image, unit)',
        'layout0.yaml:22: job "docs" dependencies: undefined job "lint" (defined: docs, image, unit)',
    ]
    (msg,) = errors_of(deps_layout(unit="dependencies: lint"))
    assert msg == 'layout0.yaml:19: job "unit" dependencies: undefined job "lint" (defined: docs, image, unit)'


def test_a_dependency_cycle_is_refused_naming_its_jobs_files_and_lines():
    (msg,) = errors_of(deps_layout(unit="dependencies: docs", image="dependencies: unit", docs="dependencies: image"))
    assert msg == ('layout0.yaml:23: job "docs": dependency cycle docs (layout0.yaml:23) -> image (layout0.yaml:21) '
                   '-> unit (layout0.yaml:18) -> docs (layout0.yaml:23)')
    (msg,) = errors_of(deps_layout(image="dependencies: [image]"))
    assert msg == 'layout0.yaml:20: job "image": dependency cycle image (layout0.yaml:20) -> image (layout0.yaml:20)'
    # across files: each job named with its own file
    other = "jobs:\n  - name: lint\n    dependencies: unit\n"
    (msg,) = errors_of(deps_layout(unit="dependencies: [{name: lint, soft: true}]"), other, names=("a.yaml", "b.yaml"))
    assert msg == 'b.yaml:2: job "lint": dependency cycle lint (b.yaml:2) -> unit (a.yaml:18) -> lint (b.yaml:2)'


def test_a_dependency_cycle_made_by_a_project_pipelines_own_dependencies_is_refused_at_the_project():
    # unit depends on image in its job; org/b's check makes image depend on unit: its items could never start
    other = ("projects:\n  - name: org/b\n    check:\n      jobs:\n        - unit\n"
             "        - image: {dependencies: [unit]}\n")
    assert errors_of(deps_layout(unit="dependencies: image"), other, names=("a.yaml", "b.yaml")) == [
        'b.yaml:6: project "org/b" pipeline check: dependency cycle image -> unit -> image']
    itself = "projects:\n  - name: org/b\n    check:\n      jobs:\n        - unit: {dependencies: [unit]}\n"
    assert errors_of(deps_layout(), itself, names=("a.yaml", "b.yaml")) == [
        'b.yaml:5: project "org/b" pipeline check: dependency cycle unit -> unit']
    # an override that breaks the job's own dependency makes no cycle
    fine = "projects:\n  - name: org/b\n    check:\n      jobs: [image, {unit: {dependencies: []}}]\n"
    parse_layout({"a.yaml": deps_layout(unit="dependencies: image"), "b.yaml": fine}, connections={"gerrit"})


def test_a_pipeline_listing_a_job_without_a_job_it_hard_depends_on_is_refused():
    (msg,) = errors_of(deps_layout(unit="dependencies: image", gate="[unit, docs]"))
    assert msg == ('layout0.yaml:28: project "org/a" pipeline gate: job "unit" depends on job "image", which this '
                   'pipeline does not run for the project (list it too, or make the dependency soft)')
    # the check pipeline lists unit alone: refused there too
    (msg,) = errors_of(deps_layout(unit="dependencies: image", check="[unit]"))
    assert msg.startswith('layout0.yaml:27: project "org/a" pipeline check: job "unit" depends on job "image"')
    soft = deps_layout(unit="dependencies: [{name: image, soft: true}]", gate="[unit, docs]")
    assert parse_layout({"layout.yaml": soft}, connections={"gerrit"}).jobs["unit"].dependencies[0].soft


def test_a_malformed_dependency_is_refused():
    assert errors_of(deps_layout(unit="dependencies: [{soft: true}, 3]")) == [
        "layout0.yaml:19: jobs[0] (unit).dependencies[0]: expected a job name or a mapping like "
        "{name: build-image, soft: true}, got a mapping {'soft': True}",
        "layout0.yaml:19: jobs[0] (unit).dependencies[1]: expected a job name or a mapping like "
        "{name: build-image, soft: true}, got an integer 3",
    ]
    (msg,) = errors_of(deps_layout(unit="dependencies: {name: image}"))
    assert msg == ("layout0.yaml:19: jobs[0] (unit).dependencies: expected a job name or a list of them, got a "
                   "mapping {'name': 'image'}")


@pytest.mark.parametrize("name, problem", [
    ("../../x", "has a '..' segment"),
    ("/srv/git/x", "starts with /"),
    ("org/./a", "has a '.' segment"),
    ("org/a.git", "ends with .git"),
    ("org//a", "has an empty segment"),
    ("org/a~", "holds '~'"),
])
def test_a_project_name_gerrit_would_refuse_is_refused_where_a_project_is_named(name: str, problem: str) -> None:
    """A project is a repository path for the merger and the executor: `../../x` would be one outside their git
    directories. As a project and as a job's required project alike."""
    errors = errors_of(replace("  - name: org/a\n", f"  - name: {name}\n"))
    assert any(f"project name '{name}' {problem}" in e and "projects[0]" in e for e in errors), errors
    required = f"    label: small\n    required-projects: [org/a, {{name: '{name}'}}]\n"
    errors = errors_of(replace("    label: small\n", required))
    assert any(f"project name '{name}' {problem}" in e and "required-projects[1]" in e for e in errors), errors


def test_project_names_as_gerrit_and_zuul_write_them_are_taken() -> None:
    required = "    label: small\n    required-projects: [opendev.org/openstack/nova, x_y.z-1]\n"
    text = replace("    label: small\n", required)
    layout = parse_layout({"layout.yaml": text.replace("  - name: org/a\n", "  - name: openstack/python-novaclient\n")},
                          connections={"gerrit"})
    assert "openstack/python-novaclient" in layout.projects


@pytest.mark.parametrize("name", ["team/check", "..", ".hidden"])
def test_a_pipeline_name_that_is_not_one_path_segment_is_refused(name: str) -> None:
    """A pipeline's state is kept under its name in ZooKeeper: `team/check` would be a pipeline `team` to a sweep of
    the pipelines a layout removed (which deleted the live one's state), `..` no path at all."""
    errors = errors_of(replace("  - name: check\n", f"  - name: '{name}'\n"))
    assert any("pipelines[0]" in e and "may hold only letters, digits and _.@+- and not start with ." in e
               for e in errors), errors
