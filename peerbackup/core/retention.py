"""Which snapshots a forget policy keeps (restic's rules), group by group.

keep-last N keeps the N newest. keep-hourly N keeps, for the N most recent
hours that have a snapshot, the newest snapshot of that hour; likewise daily,
weekly (ISO weeks), monthly and yearly. A snapshot kept by any rule stays.
A count of -1 means no limit, as in restic.

Snapshots are grouped *before* any rule applies (by host and paths unless told
otherwise, as restic does): each group keeps its own newest snapshots, so the
snapshots of one folder never push out those of another. The safety rules this
module guarantees, each a property test in tests/core/test_retention.py:

1. a policy with any keep-* count never forgets the newest snapshot of a group
   (`plan` checks it again after planning and refuses instead of planning a loss);
2. forgetting is idempotent: planning again on what was kept removes nothing;
3. adding a snapshot never makes a kept snapshot of another group go;
4. the plan depends only on the snapshots and the policy: a dry run plans
   exactly what the real run removes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

from peerbackup.errors import RetentionRefused, UsageError

GROUP_FIELDS = ("host", "paths", "tags")
DEFAULT_GROUP_BY = ("host", "paths")
# A backup node's snapshots come from many agents, one per data set and backup: grouped by data set, never by host.
NODE_GROUP_BY = ("paths",)
# How many kept snapshots a retention job's log event names per group (the counts are always whole).
OUTCOME_KEPT_MAX = 50


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

    @classmethod
    def of_node(cls, counts: dict[str, int]) -> Policy:
        """A backup node's policy as its `node.policy` event gives it (keep counts by unit)."""
        return cls(**{k: int(v) for k, v in counts.items()})

    def check(self) -> Policy:
        if any(n < -1 for n in (self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly)):
            raise UsageError("a --keep-* count is 0 or more, or -1 for no limit")
        return self


@dataclass(frozen=True)
class SnapInfo:
    """What retention needs of a snapshot. `time` is aware: its calendar (hours, days, weeks) is the one
    the buckets use, so the caller chooses the zone (the local one, as restic does)."""

    id: str
    time: dt.datetime
    host: str = ""
    paths: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


# A group's identity: the (field, value) pairs it was grouped by, values as restic prints them.
GroupKey = tuple[tuple[str, str], ...]


@dataclass
class GroupPlan:
    key: GroupKey
    keep: list[str] = field(default_factory=list)  # newest first
    remove: list[str] = field(default_factory=list)  # newest first
    reasons: dict[str, list[str]] = field(default_factory=dict)  # kept id -> the rules that keep it
    held: str = ""  # why the whole group is kept without applying the policy ("" when it was applied)

    def describe(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.key) or "all snapshots"


def parse_group_by(text: str) -> tuple[str, ...]:
    """`host,paths`, `paths`, `host`, `tags`, any comma list of them, or `none` (one group)."""
    if text.strip().lower() in ("", "none"):
        return ()
    parts = tuple(p.strip().lower() for p in text.split(","))
    bad = [p for p in parts if p not in GROUP_FIELDS]
    if bad or len(set(parts)) != len(parts):
        raise UsageError(f"--group-by {text!r}: a comma list of {', '.join(GROUP_FIELDS)}, or none")
    return tuple(f for f in GROUP_FIELDS if f in parts)


def group_key(s: SnapInfo, by: Sequence[str]) -> GroupKey:
    values = {"host": s.host, "paths": ",".join(sorted(s.paths)), "tags": ",".join(sorted(s.tags))}
    return tuple((f, values[f]) for f in by)


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
    """Return (keep, remove, reasons) for the (id, aware time) pairs of ONE group."""
    newest_first = sorted(snaps, key=lambda s: (s[1], s[0]), reverse=True)
    reasons: dict[str, list[str]] = {sid: [] for sid, _ in newest_first}
    for sid, _ in newest_first if policy.last < 0 else newest_first[: policy.last]:
        reasons[sid].append("last")
    for name, key in _BUCKETS:
        n = getattr(policy, name)
        seen: set[tuple[int, ...]] = set()
        for sid, t in newest_first:
            if 0 <= n <= len(seen):
                break
            b = key(t)
            if b not in seen:
                seen.add(b)
                reasons[sid].append(name)
    keep = [sid for sid, _ in newest_first if reasons[sid]]
    remove = [sid for sid, _ in newest_first if not reasons[sid]]
    return keep, remove, {k: v for k, v in reasons.items() if v}


def plan(snaps: Iterable[SnapInfo], policy: Policy, group_by: Sequence[str] = DEFAULT_GROUP_BY,
         hold: Callable[[GroupKey], str] | None = None) -> list[GroupPlan]:
    """The policy applied to each group on its own, groups in key order.

    `hold(key)` may name a reason to keep a whole group untouched (a backup node's data set that was removed
    from its configuration: its snapshots stay until an admin forgets them on purpose)."""
    if policy.empty():
        raise UsageError("a forget policy needs at least one --keep-* count above 0")
    groups: dict[GroupKey, list[SnapInfo]] = {}
    for s in snaps:
        groups.setdefault(group_key(s, group_by), []).append(s)
    out: list[GroupPlan] = []
    for key in sorted(groups):
        members = groups[key]
        held = hold(key) if hold else ""
        if held:
            ids = [s.id for s in sorted(members, key=lambda s: (s.time, s.id), reverse=True)]
            out.append(GroupPlan(key, ids, [], {sid: ["held"] for sid in ids}, held))
            continue
        keep, remove, reasons = apply_policy([(s.id, s.time) for s in members], policy)
        out.append(GroupPlan(key, keep, remove, reasons))
    check_plan(groups, out)
    return out


def check_plan(groups: dict[GroupKey, list[SnapInfo]], plans: Sequence[GroupPlan]) -> None:
    """The guard of every policy forget: no group loses its newest snapshot, let alone all of them.
    The rules above cannot plan that; this check is here so that a future rule that could fails loudly
    instead of deleting a folder's last backup."""
    for p in plans:
        members = groups.get(p.key, [])
        if not members:
            continue
        newest = max(members, key=lambda s: (s.time, s.id))
        if newest.id not in p.keep:
            gone = "every snapshot" if not p.keep else f"its newest snapshot {newest.id[:8]}"
            raise RetentionRefused(p.describe(), gone)


def removals(plans: Sequence[GroupPlan]) -> list[str]:
    return [sid for p in plans for sid in p.remove]


HELD_NOT_A_DATASET = "not a data set of the node: kept until forgotten on purpose"


def node_hold(datasets: Collection[str]) -> Callable[[GroupKey], str]:
    """A backup node's retention leaves whole the group of any path that is not one of its data sets."""
    def hold(key: GroupKey) -> str:
        return "" if dict(key).get("paths", "") in datasets else HELD_NOT_A_DATASET
    return hold


def group_outcome(p: GroupPlan) -> dict[str, object]:
    """A group's plan as a retention job's `job.done` event carries it: the data set, what stays and why."""
    kept = {sid[:16]: ",".join(p.reasons.get(sid, [])) for sid in p.keep[:OUTCOME_KEPT_MAX]}
    return {"path": dict(p.key).get("paths", ""), "kept": len(p.keep), "removed": len(p.remove),
            "why": kept, **({"held": p.held} if p.held else {})}
