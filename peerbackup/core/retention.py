"""Which snapshots a forget policy keeps (restic's rules).

keep-last N keeps the N newest. keep-hourly N keeps, for the N most recent
hours that have a snapshot, the newest snapshot of that hour; likewise daily,
weekly (ISO weeks), monthly and yearly. A snapshot kept by any rule stays.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    def empty(self) -> bool:
        return not any((self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly))


_BUCKETS: list[tuple[str, Callable[[dt.datetime], tuple[int, ...]]]] = [
    ("hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("daily", lambda t: (t.year, t.month, t.day)),
    ("weekly", lambda t: tuple(t.isocalendar()[:2])),
    ("monthly", lambda t: (t.year, t.month)),
    ("yearly", lambda t: (t.year,)),
]


def apply_policy(
    snaps: Sequence[tuple[str, dt.datetime]], policy: Policy
) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """Return (keep, remove, reasons) for (id, aware local time) pairs."""
    newest_first = sorted(snaps, key=lambda s: (s[1], s[0]), reverse=True)
    reasons: dict[str, list[str]] = {sid: [] for sid, _ in newest_first}
    for sid, _ in newest_first[: policy.last]:
        reasons[sid].append("last")
    for name, key in _BUCKETS:
        n = getattr(policy, name)
        seen: set[tuple[int, ...]] = set()
        for sid, t in newest_first:
            if len(seen) >= n:
                break
            b = key(t)
            if b not in seen:
                seen.add(b)
                reasons[sid].append(name)
    keep = [sid for sid, _ in newest_first if reasons[sid]]
    remove = [sid for sid, _ in newest_first if not reasons[sid]]
    return keep, remove, {k: v for k, v in reasons.items() if v}
