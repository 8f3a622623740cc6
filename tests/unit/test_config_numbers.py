"""A number in the layout or the service config is a number: YAML's true and false (ints to Python) are refused
with the file, the line and the key, never read as 1 and 0."""

from __future__ import annotations

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.config.settings import load_service_config
from gatekeeper.config.yamlfile import ConfigErrors


def layout_errors(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        parse_layout({"layout.yaml": text}, connections={"gerrit"})
    return [str(e) for e in caught.value.errors]


@pytest.mark.parametrize(("text", "error"), [
    ("jobs:\n  - {name: unit, timeout: true}\n",
     "layout.yaml:2: jobs[0] (unit).timeout: expected an integer, got a boolean true"),
    ("jobs:\n  - {name: unit, attempts: false}\n",
     "layout.yaml:2: jobs[0] (unit).attempts: expected an integer, got a boolean false"),
    ("jobs:\n  - {name: unit, hold-hours: true}\n",
     "layout.yaml:2: jobs[0] (unit).hold-hours: expected a number, got a boolean true"),
    ("jobs:\n  - name: unit\n    variants:\n      - {branches: master, timeout: true}\n",
     "layout.yaml:4: jobs[0] (unit).variants[0].timeout: expected an integer, got a boolean true"),
    ("projects:\n  - name: org/a\n    check:\n      jobs:\n        - unit: {timeout: true}\n",
     "layout.yaml:5: projects[0] (org/a).check.jobs[0].unit.timeout: expected an integer, got a boolean true"),
    ("pipelines:\n  - {name: gate, manager: dependent, window: {initial: true}}\n",
     "layout.yaml:2: pipelines[0] (gate).window.initial: expected an integer, got a boolean true"),
    ("pipelines:\n  - {name: gate, manager: dependent, window-floor: true}\n",
     "layout.yaml:2: pipelines[0] (gate).window-floor: expected an integer, got a boolean true"),
    ("pipelines:\n  - {name: check, manager: independent, disable-after-consecutive-failures: true}\n",
     "layout.yaml:2: pipelines[0] (check).disable-after-consecutive-failures: expected an integer, got a boolean "
     "true"),
    ("pipelines:\n  - {name: check, manager: independent, success: {gerrit: {labels: {Verified: true}}}}\n",
     "layout.yaml:2: pipelines[0] (check).success.gerrit.labels.Verified: expected an integer, got a boolean true"),
    ("queues:\n  - {name: q, window: {floor: true}}\n",
     "layout.yaml:2: queues[0] (q).window.floor: expected an integer, got a boolean true"),
    ("nodepool:\n  labels:\n    - {name: small, min-ready: true}\n",
     "layout.yaml:3: nodepool.labels[0] (small).min-ready: expected an integer, got a boolean true"),
    ("nodepool:\n  providers:\n    - {name: p, driver: openstack, cloud: c, max-servers: true}\n",
     "layout.yaml:3: nodepool.providers[0] (p).max-servers: expected an integer, got a boolean true"),
    ("nodepool:\n  providers:\n    - {name: p, driver: openstack, cloud: c, boot-timeout: true}\n",
     "layout.yaml:3: nodepool.providers[0] (p).boot-timeout: expected a number, got a boolean true"),
    ("nodepool:\n  providers:\n    - {name: p, driver: openstack, cloud: c, pools: [{name: m, priority: true}]}\n",
     "layout.yaml:3: nodepool.providers[0] (p).pools[0] (m).priority: expected an integer, got a boolean true"),
    ("nodepool:\n  providers:\n    - {name: p, driver: static, hosts: [{name: h, address: h, labels: s, port: true}]}"
     "\n",
     "layout.yaml:3: nodepool.providers[0] (p).hosts[0] (h).port: expected an integer, got a boolean true"),
    ("signatures:\n  - {id: true, title: t, pattern: x}\n",
     "layout.yaml:2: signatures[0].id: expected a bug number or a name, got a boolean true"),
])
def test_a_boolean_where_the_layout_wants_a_number_is_refused_naming_file_and_key(text, error):
    assert error in layout_errors(text)


@pytest.mark.parametrize(("text", "error"), [
    ("zookeeper:\n  timeout: true\n", ":2: zookeeper.timeout: expected a number, got a boolean true"),
    ("web:\n  port: true\n", ":2: web.port: expected an integer, got a boolean true"),
    ("executor:\n  hold-hours: true\n", ":2: executor.hold-hours: expected a number, got a boolean true"),
    ("executor:\n  max-held: false\n", ":2: executor.max-held: expected an integer, got a boolean false"),
    ("scheduler:\n  workers: true\n", ":2: scheduler.workers: expected an integer, got a boolean true"),
])
def test_a_boolean_where_the_service_config_wants_a_number_is_refused_naming_file_and_key(tmp_path, text, error):
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as caught:
        load_service_config(path, environ={})
    assert [str(e) for e in caught.value.errors] == [f"{path}{error}"]


def test_a_number_from_the_environment_is_still_read_as_one():
    config = load_service_config(None, environ={"GATEKEEPER_WEB_PORT": "9300", "GATEKEEPER_EXECUTOR_HOLD_HOURS": "1.5",
                                                "GATEKEEPER_GERRIT_HOST": "h", "GATEKEEPER_GERRIT_USER": "u"})
    assert (config.get("web", "port"), config.get("executor", "hold-hours")) == (9300, 1.5)


@pytest.mark.parametrize(("text", "error"), [
    ("jobs:\n  - {name: unit, timeout: " + "1" + "0" * 400 + "}\n",
     "layout.yaml:2: jobs[0] (unit).timeout: a number of 401 digits is too large (at most 2147483647)"),
    ("jobs:\n  - {name: unit, hold-hours: .nan}\n",
     "layout.yaml:2: jobs[0] (unit).hold-hours: expected a number, got a number nan"),
    ("jobs:\n  - {name: unit, hold-hours: .inf}\n",
     "layout.yaml:2: jobs[0] (unit).hold-hours: expected a number, got a number inf"),
])
def test_a_number_too_large_or_not_finite_is_refused(text: str, error: str) -> None:
    """A job timeout of 400 digits passed, then failed every build where it became seconds (a float overflow)."""
    assert error in layout_errors(text)
