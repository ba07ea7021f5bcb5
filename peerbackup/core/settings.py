"""Every timing of the daemon in one place, with the defaults of docs/daemon.md.

Tests start daemons with short timings (`peerbackup up --set heartbeat=0.2 ...`)
so liveness and election run in seconds; nothing else reads a timing constant.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from peerbackup.errors import UsageError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


_SIZES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """'500M', '200G', '1.5T', '1048576' -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text)
    if not m:
        raise UsageError(f"{text!r} is not a size (examples: 500M, 200G, 1T)")
    return int(float(m.group(1)) * _SIZES[m.group(2).lower()])


def parse_duration(text: str) -> float:
    """'1.5', '500ms', '30s', '15m', '1h', '7d' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if not m:
        raise UsageError(f"{text!r} is not a duration (examples: 500ms, 30s, 15m, 1h, 7d)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


@dataclass(frozen=True)
class Settings:
    heartbeat: float = 2.0  # seconds between signed heartbeats to each peer
    suspect: float = 8.0  # silent this long: suspect (more than heartbeat + request_timeout: see check_beats)
    dead: float = 15.0  # silent this long: dead
    clock_skew: float = 120.0  # accepted difference between a signed timestamp and our clock
    request_timeout: float = 5.0  # one peer request, connection included
    lease: float = 15.0  # coordinator lease (issue 4)
    renew: float = 5.0  # coordinator lease renewal (issue 4)
    gc_grace: float = 7 * 86400.0  # deleted packs kept in holders' trash (issue 5)
    repair_interval: float = 600.0  # the coordinator looks for under-replicated files this often
    repair_grace: float = 3600.0  # a holder silent this long no longer counts as keeping its copies
    scrub_interval: float = 86400.0  # each storage peer re-verifies every file it holds this often
    progress_interval: float = 5.0  # a running job's heartbeat to the coordinator
    stall_after: float = 600.0  # a job silent or without progress this long goes to another agent
    prune_interval: float = 86400.0  # a node's retention job prunes when the last prune is this old
    alert_interval: float = 30.0  # between two alert rounds on the coordinator; a failed channel's first retry
    min_schedule_interval: float = 60.0  # `schedule add --every` shorter than this is refused
    node_grace: float = 7 * 86400.0  # a removed node can be restored this long; its packs purged only after

    @property
    def nonce_keep(self) -> float:
        # A timestamp is accepted within ±clock_skew, so a nonce must outlive both edges.
        return 2 * self.clock_skew

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat < self.suspect < self.dead:
            raise UsageError(f"timings must satisfy 0 < heartbeat < suspect < dead (got {self.heartbeat:g} s, "
                             f"{self.suspect:g} s, {self.dead:g} s)")
        if not 0 < self.renew < self.lease:
            raise UsageError(f"timings must satisfy 0 < renew < lease (got {self.renew:g} s, {self.lease:g} s)")
        if self.clock_skew <= 0 or self.request_timeout <= 0 or self.gc_grace < 0:
            raise UsageError("clock_skew and request_timeout must be positive, gc_grace not negative")
        if self.repair_interval <= 0 or self.scrub_interval <= 0 or self.repair_grace < 0:
            raise UsageError("repair_interval and scrub_interval must be positive, repair_grace not negative")
        if self.alert_interval <= 0:
            raise UsageError("alert_interval must be positive")
        if self.min_schedule_interval < 0 or self.node_grace < 0:
            raise UsageError("min_schedule_interval and node_grace must not be negative")
        if not 0 < self.progress_interval < self.stall_after or self.prune_interval < 0:
            raise UsageError(f"timings must satisfy 0 < progress_interval < stall_after (got "
                             f"{self.progress_interval:g} s, {self.stall_after:g} s), prune_interval not negative")

    def with_overrides(self, items: list[str]) -> Settings:
        """Apply NAME=DURATION items, as given to `peerbackup up --set`."""
        known = {f.name for f in dataclasses.fields(self)}
        changes: dict[str, float] = {}
        for item in items:
            name, sep, value = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in known:
                raise UsageError(f"--set {item!r}: expected NAME=DURATION with NAME one of {', '.join(sorted(known))}")
            changes[name] = parse_duration(value)
        return dataclasses.replace(self, **changes).check_beats()

    def check_beats(self) -> Settings:
        """Refuse timings under which a peer that answers is taken for a silent one. A heartbeat whose answer
        comes late (up to request_timeout) is followed by the next one `heartbeat` later: until then the peer
        is not heard, and if that is `suspect` already, a slow link (or a peer busy for a second) makes every
        peer suspect the others, and the election follows. Checked where the daemon's timings are loaded (the
        command line, config.toml), not on every Settings: unit tests of one rule build partial timings."""
        if not self.heartbeat + self.request_timeout < self.suspect:
            raise UsageError(f"timings must satisfy heartbeat + request_timeout < suspect (got {self.heartbeat:g} s "
                             f"+ {self.request_timeout:g} s, suspect {self.suspect:g} s): a peer whose heartbeat "
                             "is answered late would look suspect; raise suspect (and dead) or lower the others")
        return self
