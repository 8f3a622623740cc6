"""The service config: defaults, the file, environment overrides for secrets, and precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.config.settings import load_service_config
from gatekeeper.config.yamlfile import ConfigErrors
from gatekeeper.zk.client import DigestAuth, TLSOptions


def write(tmp_path, text):
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(text)
    return path


def test_defaults_without_a_file():
    config = load_service_config(None, environ={})
    assert config.get("zookeeper", "hosts") == "127.0.0.1:2181"
    assert config.get("web", "port") == 9000
    assert config.connections == {"gerrit"}


def test_file_overrides_defaults_and_relative_paths_follow_the_file(tmp_path):
    path = write(tmp_path, "zookeeper:\n  hosts: 127.0.0.1:2999\nlayout: my-layouts\nlog-store:\n  dir: logs\n")
    config = load_service_config(path, environ={})
    assert config.get("zookeeper", "hosts") == "127.0.0.1:2999"
    assert config.get("zookeeper", "chroot") == "/gatekeeper"  # default kept beside the override
    assert config.layout_path == tmp_path / "my-layouts"
    assert config.path("log-store", "dir") == tmp_path / "logs"


def test_environment_overrides_secrets(tmp_path):
    path = write(tmp_path, "web:\n  port: 9100\nzookeeper:\n  auth: {username: gk, password: from-file}\n")
    env = {
        "GATEKEEPER_WEB_ADMIN_TOKEN": "t0ken",
        "GATEKEEPER_ZOOKEEPER_AUTH_PASSWORD": "from-env",
        "GATEKEEPER_WEB_PORT": "9200",
        "UNRELATED": "x",
    }
    config = load_service_config(path, environ=env)
    assert config.get("web", "admin-token") == "t0ken"
    assert config.get("web", "port") == 9200
    assert config.zk_kwargs()["auth"] == DigestAuth("gk", "from-env")
    redacted = config.redacted()
    assert redacted["web"]["admin-token"] == "***" and redacted["zookeeper"]["auth"]["password"] == "***"


def test_tls_options_reach_the_zookeeper_client(tmp_path):
    path = write(tmp_path, "zookeeper:\n  tls: {ca: /ca.pem, cert: /c.pem, key: /k.pem}\n")
    assert load_service_config(path, environ={}).zk_kwargs()["tls"] == TLSOptions("/ca.pem", "/c.pem", "/k.pem")


def test_unknown_section_and_bad_type_are_named_with_line(tmp_path):
    path = write(tmp_path, "zookeeper:\n  hosts: 1\nwebb:\n  port: 1\n")
    with pytest.raises(ConfigErrors) as exc:
        load_service_config(path, environ={})
    assert [str(e) for e in exc.value.errors] == [
        f"{path}:2: zookeeper.hosts: expected a string, got an integer 1",
        f'{path}:3: top level: unknown key "webb"',
    ]


def test_gerrit_section_requires_host_and_user(tmp_path):
    path = write(tmp_path, "gerrit:\n  port: 29418\n")
    with pytest.raises(ConfigErrors) as exc:
        load_service_config(path, environ={})
    assert [str(e) for e in exc.value.errors] == [
        f'{path}:2: gerrit: missing required key "host"',
        f'{path}:2: gerrit: missing required key "user"',
    ]


def test_unreadable_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigErrors, match="gatekeeper.yaml: cannot read service config: No such file"):
        load_service_config(tmp_path / "gatekeeper.yaml", environ={})


def test_split_auth_username_in_file_password_from_environment(tmp_path):
    path = write(tmp_path, "zookeeper:\n  auth: {username: gatekeeper}\n")
    config = load_service_config(path, environ={"GATEKEEPER_ZOOKEEPER_AUTH_PASSWORD": "from-env"})
    assert config.zk_kwargs()["auth"] == DigestAuth("gatekeeper", "from-env")
    with pytest.raises(ConfigErrors) as exc:
        load_service_config(path, environ={})
    assert [str(e) for e in exc.value.errors] == [
        f'{path}:2: zookeeper.auth: missing required key "password" '
        "(set it in the file or as GATEKEEPER_ZOOKEEPER_AUTH_PASSWORD)",
    ]


def test_environment_values_keep_the_type_the_schema_wants():
    env = {
        "GATEKEEPER_ZOOKEEPER_AUTH_USERNAME": "0042",
        "GATEKEEPER_ZOOKEEPER_AUTH_PASSWORD": "123456",
        "GATEKEEPER_WEB_ADMIN_TOKEN": "true",
        "GATEKEEPER_WEB_PORT": "9300",
        "GATEKEEPER_ZOOKEEPER_TIMEOUT": "2.5",
        "GATEKEEPER_GERRIT_HOST": "10",
        "GATEKEEPER_GERRIT_USER": "gk",
        "GATEKEEPER_GERRIT_CATCH_UP": "false",
    }
    config = load_service_config(None, environ=env)
    assert config.zk_kwargs()["auth"] == DigestAuth("0042", "123456")
    assert config.get("web", "admin-token") == "true"
    assert config.get("web", "port") == 9300
    assert config.get("zookeeper", "timeout") == 2.5
    assert config.get("gerrit", "host") == "10"
    assert config.get("gerrit", "catch-up") is False


def test_a_bad_environment_value_is_named_by_its_variable(tmp_path):
    path = write(tmp_path, "web:\n  port: 9100\n")
    with pytest.raises(ConfigErrors) as exc:
        load_service_config(path, environ={"GATEKEEPER_WEB_PORT": "ninety", "GATEKEEPER_EXECUTOR_HOLD_HOURS": "nan"})
    assert [str(e) for e in exc.value.errors] == [
        "environment variable GATEKEEPER_EXECUTOR_HOLD_HOURS: executor.hold-hours: "
        "expected a number, got a string 'nan'",
        "environment variable GATEKEEPER_WEB_PORT: web.port: expected an integer, got a string 'ninety'",
    ]


def test_service_config_that_is_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "gatekeeper.yaml"
    path.write_bytes(b"web:\n  admin-token: s\xff\n")
    with pytest.raises(ConfigErrors) as exc:
        load_service_config(path, environ={})
    assert [str(e) for e in exc.value.errors] == [
        f"{path}:2: not UTF-8 text: byte 0xff at column 17 cannot be decoded (save the file as UTF-8)",
    ]


def test_a_top_level_value_can_come_from_the_environment(tmp_path):
    config = load_service_config(write(tmp_path, "layout: from-file\n"), environ={"GATEKEEPER_LAYOUT": "/srv/layouts"})
    assert config.layout_path == Path("/srv/layouts")


@pytest.mark.parametrize(("text", "error"), [
    ("zookeeper:\n  timeout: -10\n", "zookeeper.timeout: must be at least 1 (seconds)"),
    ("gerrit:\n  host: h\n  user: u\n  timeout: 0\n", "gerrit.timeout: must be at least 1 (seconds)"),
    ("scheduler:\n  workers: -3\n", "scheduler.workers: must be at least 1"),
    ("merger:\n  workers: 0\n", "merger.workers: must be at least 1"),
    ("executor:\n  hold-hours: 100000\n", "executor.hold-hours: must be 0 to 720 (30 days)"),
    ("hold-access:\n  max-hours: 99999\n", "hold-access.max-hours: must be 0 to 720"),
    ("statsd:\n  port: -1\n", "statsd.port: value must be at least 1"),
])
def test_numbers_out_of_their_range_are_refused_naming_the_key(tmp_path, text, error):
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as caught:
        load_service_config(str(path))
    assert any(error in str(e) for e in caught.value.errors), caught.value.errors
