"""The home's optional config file, `HOME/config.toml`: what `peerbackup up` would otherwise be told.

    listen = "0.0.0.0:7420"
    peers = ["192.168.1.20:7420"]
    mdns = true
    mdns_interface = "192.168.1.10"
    storage_quota = "200G"
    restore_root = "/srv/restores"   # the dashboard restores only below it (default HOME/restores)
    metrics_listen = "127.0.0.1:9742"  # a token-free /metrics for Prometheus (default: none)
    limit_upload = "10M"               # bytes a second this peer's backup jobs send at most (default: no limit)

    [settings]
    repair_interval = "30m"

Options on the command line win over the file. Unknown keys and wrong types
stop `up` with a message naming the file and the key, so a typo is not ignored.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peerbackup.errors import UsageError

CONFIG = "config.toml"
_TYPES: dict[str, type | tuple[type, ...]] = {
    "listen": str, "peers": list, "mdns": bool, "mdns_interface": str, "storage_quota": str, "settings": dict,
    "restore_root": str, "metrics_listen": str, "limit_upload": str,
}


@dataclass(frozen=True)
class HomeConfig:
    listen: str | None = None
    peers: list[str] = field(default_factory=list)
    mdns: bool | None = None
    mdns_interface: str | None = None
    storage_quota: str | None = None
    settings: list[str] = field(default_factory=list)  # NAME=DURATION, as `up --set` takes them
    restore_root: str | None = None
    metrics_listen: str | None = None
    limit_upload: str | None = None


def load_config(home: Path) -> HomeConfig:
    path = home / CONFIG
    try:
        with open(path, "rb") as f:
            raw: dict[str, Any] = tomllib.load(f)
    except FileNotFoundError:
        return HomeConfig()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    for key, value in raw.items():
        want = _TYPES.get(key)
        if want is None:
            raise UsageError(f"{path}: unknown key {key!r} (known: {', '.join(_TYPES)})")
        if not isinstance(value, want):
            raise UsageError(f"{path}: {key} has the wrong type")
    peers = raw.get("peers", [])
    if not all(isinstance(p, str) for p in peers):
        raise UsageError(f"{path}: peers must be a list of \"HOST:PORT\" strings")
    settings = raw.get("settings", {})
    if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in settings.values()):
        raise UsageError(f"{path}: [settings] values are durations such as \"30s\" or \"1h\"")
    return HomeConfig(raw.get("listen"), list(peers), raw.get("mdns"), raw.get("mdns_interface"),
                      raw.get("storage_quota"), [f"{k}={v}" for k, v in settings.items()], raw.get("restore_root"),
                      raw.get("metrics_listen"), raw.get("limit_upload"))
