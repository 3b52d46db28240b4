"""Agent configuration: a TOML file, overridden by HOMEPOT_AGENT_* environment variables.

A bad value stops the agent with a message naming the key.
"""

from __future__ import annotations

import ipaddress
import math
import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from homepot_agent import contract, lab

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9 / 3.10
    import tomli as tomllib

DEFAULT_CONFIG_PATH = Path("/etc/homepot/agent.toml")
ENV_PREFIX = "HOMEPOT_AGENT_"
# Every command type the server may send: from the server's contract.json.
ALL_COMMANDS = list(contract.COMMAND_TYPES)
# Off unless allowed_commands names them: arp_update changes the host's
# neighbour table (it needs CAP_NET_ADMIN), so a device opts in.
OPT_IN_COMMANDS = ("arp_update",)
DEFAULT_COMMANDS = [c for c in ALL_COMMANDS if c not in OPT_IN_COMMANDS]


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key."""


@dataclass(frozen=True)
class AgentConfig:
    server_url: str = ""
    device_id: str = ""
    site_id: str = ""
    state_dir: Path = Path("/var/lib/homepot-agent")
    collect_interval: float = 10.0
    push_interval: float = 30.0
    poll_interval: float = 30.0
    # The longest a poll asks the server to hold it open for a command (its
    # `wait`); 0: plain polls only. Used only while the server advertises it.
    long_poll_seconds: int = 30
    enabled_collectors: list[str] = field(default_factory=lambda: ["system", "services", "agent"])
    allowed_commands: list[str] = field(default_factory=lambda: list(DEFAULT_COMMANDS))
    allowed_services: list[str] = field(default_factory=list)
    spool_max_samples: int = 100_000
    command_timeout: float = 120.0
    output_max_chars: int = 65_536
    verify_tls: bool = True
    ca_bundle: str = ""
    allow_insecure_http: bool = False
    max_backoff: float = 60.0
    # Lab collector tables ([bme680], [mlx90640], ...) as written in the file;
    # homepot_agent.lab parses them.
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def key_path(self) -> Path:
        return self.state_dir / "api_key"

    @property
    def spool_path(self) -> Path:
        return self.state_dir / "spool.sqlite3"

    @property
    def commands_path(self) -> Path:
        return self.state_dir / "commands.sqlite3"

    def tls_verify(self) -> bool | str:
        """What requests' ``verify`` takes: False, True, or a CA bundle path."""
        if not self.verify_tls:
            return False
        return self.ca_bundle or True


_POSITIVE = {
    "collect_interval",
    "push_interval",
    "poll_interval",
    "command_timeout",
    "max_backoff",
}
_AT_LEAST_ONE = {"spool_max_samples", "output_max_chars"}
LONG_POLL_LIMIT = 3600  # an hour: beyond it a proxy on the way would cut the request anyway
BASE_COLLECTORS = {"system", "services", "agent"}
KNOWN_COLLECTORS = BASE_COLLECTORS | set(lab.REGISTRY)


def _coerce(name: str, kind: type, raw: Any) -> Any:
    """Turn a TOML value or an environment string into the field's type."""
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).strip().lower() in {"1", "true", "yes", "on"}:
                return True
            if str(raw).strip().lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError("not a boolean")
        if kind is list:
            items = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError("not a list of strings")
            return [i.strip() for i in items if i.strip()]
        if kind is Path:
            return Path(str(raw))
        if kind in (int, float):
            if isinstance(raw, bool):
                raise ValueError("not a number")
            return kind(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {raw!r} is {exc}") from None


_TYPES = {
    "state_dir": Path,
    "collect_interval": float,
    "push_interval": float,
    "poll_interval": float,
    "long_poll_seconds": int,
    "enabled_collectors": list,
    "allowed_commands": list,
    "allowed_services": list,
    "spool_max_samples": int,
    "command_timeout": float,
    "output_max_chars": int,
    "verify_tls": bool,
    "allow_insecure_http": bool,
    "max_backoff": float,
}


def config_from_mapping(values: dict[str, Any], base: AgentConfig | None = None) -> AgentConfig:
    """Validate and apply settings (from the file, the environment or update_config)."""
    values = dict(values)
    base = base or AgentConfig()
    tables = {**base.tables, **_tables(values)}
    known = {f.name for f in fields(AgentConfig)} - {"tables"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown setting")
    changes = {k: _coerce(k, _TYPES.get(k, str), v) for k, v in values.items()}
    config = replace(base, **changes, tables=tables)
    validate(config)
    return config


def _tables(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Take the lab collectors' tables out of ``values``."""
    return {name: values.pop(name) for name in list(values) if name in lab.REGISTRY}


def validate(config: AgentConfig) -> None:
    for name in _POSITIVE:
        value = getattr(config, name)
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{name}: must be a finite number more than 0")
    for name in _AT_LEAST_ONE:
        if getattr(config, name) < 1:
            raise ConfigError(f"{name}: must be at least 1")
    if not 0 <= config.long_poll_seconds <= LONG_POLL_LIMIT:
        raise ConfigError(f"long_poll_seconds: must be 0 (off) to {LONG_POLL_LIMIT}")
    bad = sorted(set(config.enabled_collectors) - KNOWN_COLLECTORS)
    if bad:
        raise ConfigError(f"enabled_collectors: unknown collector {bad[0]!r}")
    for name in sorted(set(config.tables) | (set(config.enabled_collectors) & set(lab.REGISTRY))):
        try:
            lab.parse_table(name, config.tables.get(name, {}))
        except ValueError as exc:
            raise ConfigError(f"{name}.{exc}") from None
    bad = sorted(set(config.allowed_commands) - set(ALL_COMMANDS))
    if bad:
        raise ConfigError(f"allowed_commands: unknown command {bad[0]!r}")
    if config.server_url and not config.server_url.startswith(("http://", "https://")):
        raise ConfigError(f"server_url: {config.server_url!r} is not an http(s) URL")
    if (
        config.server_url.startswith("http://")
        and not config.allow_insecure_http
        and not is_loopback(config.server_url)
    ):
        # The API key and every result would cross the network in clear text.
        raise ConfigError(
            f"server_url: {config.server_url!r} is plain http to another machine: use https, "
            "or set allow_insecure_http = true to accept sending the key unencrypted"
        )


def is_loopback(url: str) -> bool:
    """True if the URL names this machine by a loopback address or "localhost"
    (no DNS lookup: the name as written decides)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_config(path: Path | None = None, environ: dict[str, str] | None = None) -> AgentConfig:
    """The file (if it exists), then HOMEPOT_AGENT_<KEY> environment overrides."""
    path = path or Path(os.environ.get(f"{ENV_PREFIX}CONFIG", DEFAULT_CONFIG_PATH))
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if path.exists():
        try:
            values.update(tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for f in fields(AgentConfig):
        if f.name == "tables":  # tables are only in the file
            continue
        raw = environ.get(f"{ENV_PREFIX}{f.name.upper()}")
        if raw is not None:
            values[f.name] = raw
    return config_from_mapping(values)


def save_config(config: AgentConfig, path: Path) -> None:
    """Write the settings that differ from the defaults, as TOML."""
    defaults = AgentConfig()
    lines = []
    for f in fields(AgentConfig):
        value = getattr(config, f.name)
        if f.name == "tables" or value == getattr(defaults, f.name):
            continue
        lines.append(f"{f.name} = {_toml_value(value)}")
    for name, table in sorted(config.tables.items()):  # tables come after the top-level keys
        lines.append(f"\n[{name}]")
        lines.extend(_table_lines(table))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _table_lines(table: dict[str, Any], prefix: str = "") -> list[str]:
    """A table's keys; a list of tables (mcp3424 channels) as inline tables."""
    return [f"{prefix}{key} = {_toml_value(value)}" for key, value in table.items()]


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
