"""The service config (`gatekeeper.yaml`): where ZooKeeper, Gerrit, the log store and the web server are.

Every value may be overridden from the environment, which is where secrets belong:
`GATEKEEPER_<SECTION>_<KEY>` with dashes as underscores, e.g. `GATEKEEPER_WEB_ADMIN_TOKEN`,
`GATEKEEPER_ZOOKEEPER_AUTH_PASSWORD`.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatekeeper.config import schema
from gatekeeper.config.layout import validate
from gatekeeper.config.yamlfile import ConfigError, ConfigErrors, load_yaml
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


def _apply_env(data: dict, environ: dict[str, str]) -> list[ConfigError]:
    """Apply GATEKEEPER_SECTION_KEY[_SUBKEY] overrides for keys the schema knows."""
    errors = []
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ("GATEKEEPER_CONFIG",):
            continue
        parts = name[len(ENV_PREFIX):].lower().split("_")
        target = _env_target(parts)
        if target is None:
            continue
        node = data
        for key in target[:-1]:
            node = node.setdefault(key, {})
        node[target[-1]] = _coerce(raw)
    return errors


def _env_target(parts: list[str]) -> list[str] | None:
    """Map ['web','admin','token'] to ['web','admin-token'] by trying the known keys of the schema."""
    known = schema.SERVICE_CONFIG.schema
    for i in range(1, len(parts)):
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
                    return [section, key]
                if isinstance(inner, dict):
                    leaf = "-".join(rest[j:])
                    if _schema_keys(inner, leaf) is not None:
                        return [section, key, leaf]
        elif len(rest) == 0:
            return [section]
    return None


def _schema_keys(s: Any, key: str) -> Any:
    if not isinstance(s, dict):
        return None
    for k, value in s.items():
        if str(getattr(k, "schema", k)) == key:
            return value
    return None


def _coerce(raw: str) -> Any:
    if raw.isdigit():
        return int(raw)
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw


def load_service_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> ServiceConfig:
    """Defaults, then the YAML file at `path` (if any), then GATEKEEPER_* environment overrides."""
    environ = dict(os.environ if environ is None else environ)
    data = copy.deepcopy(DEFAULTS)
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigErrors([ConfigError(source, 0, "", f"cannot read service config: {exc.strerror}")]) from None
        loaded = load_yaml(text, source)
        if loaded is not None:
            if not isinstance(loaded, dict):
                raise ConfigErrors([ConfigError(source, 1, "", "expected a mapping of sections at the top level")])
            errors = validate(schema.SERVICE_CONFIG, loaded, source)
            if errors:
                raise ConfigErrors(errors)
            _merge(data, _plain(loaded))
    _apply_env(data, environ)
    errors = validate(schema.SERVICE_CONFIG, data, source)
    if errors:
        raise ConfigErrors(errors)
    return ServiceConfig(data=data, source=source)
