"""The service config (`gatekeeper.yaml`): where ZooKeeper, Gerrit, the log store and the web server are.

Every value may be overridden from the environment, which is where secrets belong:
`GATEKEEPER_<SECTION>_<KEY>` with dashes as underscores, e.g. `GATEKEEPER_WEB_ADMIN_TOKEN`,
`GATEKEEPER_ZOOKEEPER_AUTH_PASSWORD`.
"""

from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import voluptuous as v

from gatekeeper.config import schema
from gatekeeper.config.layout import validate
from gatekeeper.config.schema_parts import Number
from gatekeeper.config.yamlfile import ConfigError, ConfigErrors, load_yaml, read_text
from gatekeeper.zk.client import DigestAuth, TLSOptions

DEFAULTS: dict[str, Any] = {
    "zookeeper": {"hosts": "127.0.0.1:2181", "chroot": "/gatekeeper", "timeout": 10},
    "layout": "layouts",
    "merger": {"git-dir": "~/.gatekeeper/git", "workers": 2},
    "executor": {"work-dir": "~/.gatekeeper/builds", "concurrency": 4, "hold-hours": 24, "max-held": 10},
    "launcher": {"clouds-yaml": "~/.config/openstack/clouds.yaml", "cleanup-interval": 3600},
    "log-store": {"dir": "~/.gatekeeper/logs", "url": "http://127.0.0.1:9000/logs"},
    "web": {"listen": "127.0.0.1", "port": 9000},
    "history": {"url": "sqlite:///~/.gatekeeper/history.sqlite"},
}
ENV_PREFIX = "GATEKEEPER_"


@dataclass
class ServiceConfig:
    """The merged config: defaults, then the file, then the environment."""

    data: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULTS))
    source: str = "<defaults>"

    def section(self, name: str) -> dict[str, Any]:
        return self.data.get(name) or {}

    def get(self, section: str, key: str, default: Any = None) -> Any:
        return self.section(section).get(key, default)

    def path(self, section: str, key: str) -> Path:
        """A path setting, with `~` expanded and relative paths taken from the config file's folder."""
        value = Path(os.path.expanduser(str(self.get(section, key))))
        if not value.is_absolute() and self.source not in ("<defaults>", "<string>"):
            value = Path(self.source).parent / value
        return value

    @property
    def layout_path(self) -> Path:
        value = Path(os.path.expanduser(str(self.data.get("layout", "layouts"))))
        if not value.is_absolute() and self.source not in ("<defaults>", "<string>"):
            value = Path(self.source).parent / value
        return value

    @property
    def connections(self) -> set[str]:
        gerrit = self.section("gerrit")
        return {gerrit.get("name", "gerrit")}

    def zk_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for gatekeeper.zk.client.ZKClient."""
        zk = self.section("zookeeper")
        kwargs: dict[str, Any] = {"chroot": zk.get("chroot"), "timeout": float(zk.get("timeout", 10))}
        if zk.get("auth"):
            kwargs["auth"] = DigestAuth(zk["auth"]["username"], zk["auth"]["password"])
        if zk.get("tls"):
            kwargs["tls"] = TLSOptions(zk["tls"]["ca"], zk["tls"]["cert"], zk["tls"]["key"])
        return kwargs

    def redacted(self) -> dict[str, Any]:
        """The config with secrets masked, for logs and `--show`."""
        out = copy.deepcopy(self.data)
        for section, key in (("web", "admin-token"),):
            if out.get(section, {}).get(key):
                out[section][key] = "***"
        if out.get("web", {}).get("user-tokens"):
            out["web"]["user-tokens"] = {user: "***" for user in out["web"]["user-tokens"]}
        if out.get("zookeeper", {}).get("auth"):
            out["zookeeper"]["auth"]["password"] = "***"
        return out


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _apply_env(data: dict, environ: dict[str, str]) -> dict[tuple[str, ...], str]:
    """Apply GATEKEEPER_SECTION_KEY[_SUBKEY] overrides for keys the schema knows; return {key path: variable}."""
    applied: dict[tuple[str, ...], str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in ("GATEKEEPER_CONFIG",):
            continue
        parts = name[len(ENV_PREFIX):].lower().split("_")
        found = _env_target(parts)
        if found is None:
            continue
        target, validator = found
        node: Any = data
        for key in target[:-1]:
            if not isinstance(node, dict):
                break
            node = node.setdefault(key, {})
        if not isinstance(node, dict):
            continue  # the file gives this section a wrong type; the schema says so, naming its line
        node[target[-1]] = _coerce(raw, validator)
        applied[tuple(target)] = name
    return applied


def _env_target(parts: list[str]) -> tuple[list[str], Any] | None:
    """Map ['web','admin','token'] to (['web','admin-token'], its validator) by trying the schema's known keys."""
    known = schema.SERVICE_CONFIG.schema
    for i in range(1, len(parts) + 1):
        section = "-".join(parts[:i])
        sub = _schema_keys(known, section)
        if sub is None:
            continue
        rest = parts[i:]
        if isinstance(sub, dict):
            for j in range(1, len(rest) + 1):
                key = "-".join(rest[:j])
                inner = _schema_keys(sub, key)
                if inner is None:
                    continue
                if j == len(rest):
                    return [section, key], inner
                if isinstance(inner, dict):
                    leaf = "-".join(rest[j:])
                    value = _schema_keys(inner, leaf)
                    if value is not None:
                        return [section, key, leaf], value
        elif len(rest) == 0:
            return [section], sub
    return None


def _schema_keys(s: Any, key: str) -> Any:
    if not isinstance(s, dict):
        return None
    for k, value in s.items():
        if str(getattr(k, "schema", k)) == key:
            return value
    return None


def _wanted_types(validator: Any) -> tuple[type, ...]:
    """The plain types a schema value accepts: `str` for NAME, (int, float) for NUMBER."""
    if isinstance(validator, type):
        return (validator,)
    if isinstance(validator, Number):
        return validator.kinds
    if isinstance(validator, v.Schema):
        return _wanted_types(validator.schema)
    if isinstance(validator, v.All):
        return _wanted_types(validator.validators[0]) if validator.validators else ()
    if isinstance(validator, v.Any):
        return tuple(t for inner in validator.validators for t in _wanted_types(inner))
    return ()


def _coerce(raw: str, validator: Any) -> Any:
    """An environment value as the type the schema wants there; a string stays a string (an all-digit secret
    too), and a value that is not of the wanted type stays as it is, for the schema to name."""
    wanted = _wanted_types(validator)
    if not wanted or str in wanted:
        return raw
    text = raw.strip()
    if bool in wanted and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if int in wanted and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if float in wanted:
        try:
            number = float(text)
        except ValueError:
            return raw
        return number if math.isfinite(number) else raw
    return raw


def _from_environment(errors: list[ConfigError], applied: dict[tuple[str, ...], str]) -> list[ConfigError]:
    """Errors about values the environment set name the variable; a missing key says it may come from there."""
    out = []
    for error in errors:
        keys = tuple(error.where.split(".")) if error.where and error.where != "top level" else ()
        missing = re.match(r'missing required key "(.+)"$', error.message)
        if missing and keys == ("zookeeper", "auth"):  # the secret half of the split form
            variable = ENV_PREFIX + "_".join((*keys, missing.group(1))).upper().replace("-", "_")
            error = ConfigError(error.source, error.line, error.where,
                                f"{error.message} (set it in the file or as {variable})")
        else:
            for path, variable in applied.items():
                if keys[:len(path)] == path:
                    error = ConfigError(f"environment variable {variable}", 0, error.where, error.message)
                    break
        out.append(error)
    return out


def load_service_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> ServiceConfig:
    """Defaults, then the YAML file at `path` (if any), then GATEKEEPER_* environment overrides.

    The file and the environment are checked together, so that a file may leave a secret (the ZooKeeper
    password, the admin token) to the environment.
    """
    environ = dict(os.environ if environ is None else environ)
    data = copy.deepcopy(DEFAULTS)
    source = "<defaults>"
    given: Any = {}
    if path is not None:
        source = str(path)
        loaded = load_yaml(read_text(path, "service config"), source)
        if loaded is not None:
            if not isinstance(loaded, dict):
                raise ConfigErrors([ConfigError(source, 1, "", "expected a mapping of sections at the top level")])
            given = loaded
    applied = _apply_env(given, environ)
    errors = validate(schema.SERVICE_CONFIG, given, source if path is not None else "environment")
    if errors:
        raise ConfigErrors(_from_environment(errors, applied))
    _merge(data, _plain(given))
    errors = validate(schema.SERVICE_CONFIG, data, source)
    if errors:
        raise ConfigErrors(_from_environment(errors, applied))
    return ServiceConfig(data=data, source=source)
