"""The operator's settings: ``node.toml`` in the data directory (PROTOCOL.md
§13.3), which ``smu node run`` flags override one by one.

Every key is optional; an unknown key, or a value of the wrong type, is an
error naming the key (a typo must not silently fall back to a default).

    listen = ["/ip4/0.0.0.0/tcp/4001"]
    bootstrap = ["/ip4/203.0.113.7/tcp/4001/p2p/12D3Koo..."]
    log_level = "info"
    relay = true              # serve circuit relay for this network's devices
    mailbox = true            # hold messages for other nodes' devices (grants)
    web = true                # the local web app (false: none)
    web_port = 8420           # its port (0, or absent: a free port)
    metrics_port = 9464       # Prometheus metrics on loopback (absent: off)
    disk_budget_mb = 2048     # the database may not grow past this
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import NodeUsageError

CONFIG_FILE = "node.toml"
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LISTEN = ["/ip4/127.0.0.1/tcp/0"]


@dataclass(frozen=True, slots=True)
class NodeConfig:
    listen: list[str] = field(default_factory=lambda: list(DEFAULT_LISTEN))
    bootstrap: list[str] = field(default_factory=list)
    log_level: str = "info"
    relay: bool = True
    mailbox: bool = True
    web: bool = True
    web_port: int | None = None
    metrics_port: int | None = None
    disk_budget_mb: int | None = None

    def with_flags(self, **flags: Any) -> NodeConfig:
        """Flags given on the command line (None: not given) win."""
        given = {k: v for k, v in flags.items() if v is not None}
        unknown = set(given) - {f.name for f in fields(self)}
        if unknown:
            raise NodeUsageError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return _checked(replace(self, **given), "the command line")

    @property
    def disk_budget_bytes(self) -> int | None:
        return None if self.disk_budget_mb is None else self.disk_budget_mb * 1024 * 1024

    @property
    def web_listen_port(self) -> int | None:
        """The web app's port (0: a free one), or None: no web app."""
        return (self.web_port or 0) if self.web else None


def _strings(key: str, value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise NodeUsageError(f"{where}: {key} is a list of multiaddrs (strings)")
    return list(value)


def _port(key: str, value: object, where: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= 65535:
        raise NodeUsageError(f"{where}: {key} is a port number, 0 to 65535")
    return value


def _checked(c: NodeConfig, where: str) -> NodeConfig:
    _strings("listen", c.listen, where)
    _strings("bootstrap", c.bootstrap, where)
    if c.log_level not in LOG_LEVELS:
        raise NodeUsageError(f"{where}: log_level is one of {', '.join(LOG_LEVELS)}")
    if type(c.relay) is not bool:
        raise NodeUsageError(f"{where}: relay is true or false")
    if type(c.mailbox) is not bool:
        raise NodeUsageError(f"{where}: mailbox is true or false")
    if type(c.web) is not bool:
        raise NodeUsageError(f"{where}: web is true or false")
    _port("web_port", c.web_port, where)
    _port("metrics_port", c.metrics_port, where)
    if c.disk_budget_mb is not None and (
        type(c.disk_budget_mb) is not int or c.disk_budget_mb < 16
    ):
        raise NodeUsageError(f"{where}: disk_budget_mb is a whole number of MiB, at least 16")
    return c


def load_config(data_dir: Path) -> NodeConfig:
    """``node.toml`` if there is one, else the defaults."""
    path = data_dir / CONFIG_FILE
    if not path.exists():
        return NodeConfig()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise NodeUsageError(f"{path}: {exc}") from exc
    known = {f.name for f in fields(NodeConfig)}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise NodeUsageError(
            f"{path}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return _checked(NodeConfig(**doc), str(path))
