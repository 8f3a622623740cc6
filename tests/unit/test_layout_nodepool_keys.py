"""Nodepool's keys an operator porting a nodepool.yaml brings: read as Nodepool means them, and a value Nodepool
would not take refused naming the file, the line and the key."""

from __future__ import annotations

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.config.yamlfile import ConfigErrors

PROVIDER = ("nodepool:\n  labels:\n    - {{name: small}}\n"
            "  providers:\n    - name: p\n      driver: openstack\n      cloud: c\n{extra}"
            "      pools:\n        - name: main\n{pool}          labels:\n"
            "            - {{name: small, image: deb, flavor: f{label}}}\n"
            "      images:\n        - {{name: deb, base-image: debian-12}}\n")


def layout(extra: str = "", pool: str = "", label: str = "", top: str = ""):
    text = PROVIDER.format(extra=extra, pool=pool, label=label).replace("nodepool:\n", f"nodepool:\n{top}", 1)
    return parse_layout({"layout.yaml": text}).nodepool


def errors(**kw) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        layout(**kw)
    return [str(e) for e in caught.value.errors]


def test_max_concurrency_bounds_the_provider_and_nodepools_no_maximum_is_none():
    assert layout(extra="      max-concurrency: 2\n").providers["p"].max_concurrency == 2
    assert layout().providers["p"].max_concurrency is None
    assert layout(extra="      max-concurrency: -1\n").providers["p"].max_concurrency is None
    assert layout(extra="      max-concurrency: 0\n").providers["p"].max_concurrency is None  # as Nodepool


@pytest.mark.parametrize(("value", "error"), [
    ("true", "layout.yaml:8: nodepool.providers[0] (p).max-concurrency: expected an integer, got a boolean true"),
    ("-2", "layout.yaml:8: nodepool.providers[0] (p).max-concurrency: must be at least 1, or -1 or 0 (no maximum)"),
    ("1.5", "layout.yaml:8: nodepool.providers[0] (p).max-concurrency: expected an integer"),
])
def test_a_max_concurrency_nodepool_would_not_take_is_refused(value, error):
    assert any(e.startswith(error) for e in errors(extra=f"      max-concurrency: {value}\n")), errors(
        extra=f"      max-concurrency: {value}\n")


def test_a_pools_networks_are_kept_in_order_and_none_is_the_clouds_default():
    assert layout(pool="          networks: [ci-net, 5e1f0000-aaaa]\n").providers["p"].pools[0].networks == (
        "ci-net", "5e1f0000-aaaa")
    assert layout().providers["p"].pools[0].networks == ()


POOL = "layout.yaml:10: nodepool.providers[0] (p).pools[0] (main)"


@pytest.mark.parametrize(("value", "error"), [
    ("ci-net", f"{POOL}.networks: expected a list, got a string 'ci-net'"),
    ("[ci-net, 3]", f"{POOL}.networks[1]: expected a string, got an integer 3"),
    ("['']", f"{POOL}.networks[0]: must not be empty"),
])
def test_networks_that_are_not_a_list_of_names_are_refused(value, error):
    found = errors(pool=f"          networks: {value}\n")
    assert any(e.startswith(error) for e in found), found


def test_a_pool_labels_nodepool_keys_are_read_and_python_path_and_shell_type_default_to_its_images():
    [pl] = layout(label=", userdata: '#cloud-config', console-log: true, python-path: /usr/bin/python3, "
                        "shell-type: sh").providers["p"].pools[0].labels
    assert (pl.userdata, pl.console_log, pl.python_path, pl.shell_type) == ("#cloud-config", True,
                                                                            "/usr/bin/python3", "sh")
    [pl] = layout().providers["p"].pools[0].labels
    assert (pl.userdata, pl.console_log, pl.python_path, pl.shell_type) == ("", False, "auto", "")
    text = PROVIDER.format(extra="", pool="", label="").replace(
        "{name: deb, base-image: debian-12}", "{name: deb, base-image: debian-12, python-path: /py, shell-type: csh}")
    [pl] = parse_layout({"layout.yaml": text}).nodepool.providers["p"].pools[0].labels
    assert (pl.python_path, pl.shell_type) == ("/py", "csh")


LABEL = "layout.yaml:11: nodepool.providers[0] (p).pools[0] (main).labels[0] (small)"


@pytest.mark.parametrize(("value", "error"), [
    (", console-log: 'yes'", f"{LABEL}.console-log: expected true or false, got a string 'yes'"),
    (", userdata: 3", f"{LABEL}.userdata: expected a string, got an integer 3"),
    (", python-path: ''", f"{LABEL}.python-path: must not be empty"),
    (", shell-type: [sh]", f"{LABEL}.shell-type: expected a string, got a list"),
])
def test_a_pool_label_key_nodepool_would_not_take_is_refused(value, error):
    found = errors(label=value)
    assert any(e.startswith(error) for e in found), found


def test_max_hold_age_is_read_and_nodepools_default_is_no_limit():
    assert layout(top="  max-hold-age: 86400\n").max_hold_age == 86400
    assert layout().max_hold_age == 0


@pytest.mark.parametrize(("value", "error"), [
    ("true", "layout.yaml:2: nodepool.max-hold-age: expected a number, got a boolean true"),
    ("-1", "layout.yaml:2: nodepool.max-hold-age: must not be negative (0: no limit)"),
    ("1d", "layout.yaml:2: nodepool.max-hold-age: expected a number, got a string '1d'"),
])
def test_a_max_hold_age_that_is_not_seconds_is_refused(value, error):
    found = errors(top=f"  max-hold-age: {value}\n")
    assert any(e.startswith(error) for e in found), found


@pytest.mark.parametrize(("userdata", "error"), [
    ('"\\ud800 hi"', "userdata: is not text a server can be given: surrogates not allowed at character 0"),
    ('"' + "x" * 60000 + '"', "userdata: is 60000 bytes: Nova takes at most 65535 bytes of user data once "
                              "base64-encoded"),
])
def test_userdata_every_create_would_fail_with_is_refused(userdata: str, error: str) -> None:
    """A lone surrogate could not be encoded and more than Nova's 65535 bytes was refused by it: every boot failed,
    saying nothing of the userdata."""
    assert any(error in e for e in errors(label=f", userdata: {userdata}")), errors(label=f", userdata: {userdata}")
