"""Backup nodes as the office control log defines them. Synchronous, no I/O.

A backup node is a logical owner of data (a shared folder, a team). `node.add`
(by an admin) creates its KeySet and seals it to every admin; `node.grant`
seals it to an agent; `node.revoke` removes an agent and starts a new data-key
epoch sealed to the remaining holders only. The sealed copies live in the log,
so any holder can open its own on any machine it runs on, and nobody else can.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from peerbackup.core import codec, hlc
from peerbackup.core.events import Event
from peerbackup.core.identity import SigningKey, is_peer_id, seal_to
from peerbackup.core.keys import KeySet
from peerbackup.core.schedule import Schedule
from peerbackup.errors import FormatError, UsageError

NODE_ADD, NODE_GRANT, NODE_REVOKE = "node.add", "node.grant", "node.revoke"
# What to back up, when, and what to keep (issue 6): changed by admins like the rest.
NODE_DATASET, NODE_SCHEDULE, NODE_POLICY = "node.dataset", "node.schedule", "node.policy"
# Configuration that can be undone (issue 13), by admins too. None of them deletes data: a removed data
# set's snapshots stay, a removed node keeps its keys (its key events stay in the log) and its packs until
# an admin's purge after the grace its node.remove event names (docs/nodes.md, "What undoing never does").
NODE_DATASET_REMOVE = "node.dataset_remove"
NODE_SCHEDULE_REMOVE, NODE_SCHEDULE_PAUSE, NODE_SCHEDULE_RESUME = (
    "node.schedule_remove", "node.schedule_pause", "node.schedule_resume")
NODE_REMOVE, NODE_RESTORE, NODE_PURGE = "node.remove", "node.restore", "node.purge"
SCHEDULE_STATE_KINDS = (NODE_SCHEDULE_REMOVE, NODE_SCHEDULE_PAUSE, NODE_SCHEDULE_RESUME)
LIFE_KINDS = (NODE_REMOVE, NODE_RESTORE, NODE_PURGE)
KEY_KINDS = (NODE_ADD, NODE_GRANT, NODE_REVOKE)
UNDO_KINDS = (NODE_DATASET_REMOVE, *SCHEDULE_STATE_KINDS, *LIFE_KINDS)
CONFIG_KINDS = (NODE_DATASET, NODE_SCHEDULE, NODE_POLICY, *UNDO_KINDS)
NODE_KINDS = KEY_KINDS + CONFIG_KINDS
POLICY_UNITS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
MAX_PATTERNS = 256
DEFAULT_REPLICAS = 2
MAX_REPLICAS = 16

# Lower-case letters, digits, dot, dash, underscore; no leading dot: a node name becomes a
# directory name on storage peers, so nothing in it may climb out or hide.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_SCHEDULE_ID = r"[a-z0-9]{1,16}"


def check_node_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise FormatError("node name", f"{name!r}: 1 to 63 of a-z 0-9 . _ -, starting with a letter or digit")
    return name


def seal_keys(keys: KeySet, recipients: dict[str, bytes]) -> dict[str, bytes]:
    """The KeySet sealed to each recipient's Ed25519 public key, by peer id."""
    plain = codec.pack(keys.to_wire())
    return {peer_id: seal_to(public_key, plain) for peer_id, public_key in sorted(recipients.items())}


def seal_office(keys: KeySet, office_public_key: bytes) -> bytes:
    """The KeySet sealed to the office key too: whoever holds the office key (any admin, an admin rebuilt
    from the recovery kit) can always open the node's keys, even after every holder is lost."""
    return seal_to(office_public_key, codec.pack(keys.to_wire()))


def open_keys(box: bytes, key: SigningKey) -> KeySet:
    return KeySet.from_wire(codec.unpack(key.open_sealed(box), "node keys"))


@dataclass
class Node:
    name: str
    replicas: int
    created_by: str
    epoch: int = 0
    agents: set[str] = field(default_factory=set)
    boxes: dict[str, bytes] = field(default_factory=dict)  # holder peer id -> sealed KeySet (current epoch)
    office_box: bytes = b""  # the KeySet sealed to the office key (nodes added before it have none)
    created: int = 0  # unix seconds of the node.add event (its HLC wall time)
    datasets: dict[str, Dataset] = field(default_factory=dict)  # by path
    schedules: dict[str, Schedule] = field(default_factory=dict)  # by schedule id
    policy: dict[str, int] = field(default_factory=dict)  # keep-* counts, by unit
    paused: dict[str, Schedule] = field(default_factory=dict)  # paused schedules, by id (never dispatched)
    removed: float = 0.0  # unix seconds of the node.remove in force (0: not removed)
    restorable_until: float = 0.0  # what that node.remove granted: restore-config before, purge after
    purged: float = 0.0  # unix seconds of the node.purge (its packs may be deleted; no restore)

    @property
    def holders(self) -> set[str]:
        return set(self.boxes)

    def describe(self) -> dict[str, Any]:
        return {"node": self.name, "replicas": self.replicas, "epoch": self.epoch, "created": self.created,
                "agents": sorted(self.agents), "holders": sorted(self.holders), "created_by": self.created_by,
                "datasets": [d.describe() for _, d in sorted(self.datasets.items())],
                "schedules": [dataclasses.asdict(sc) for _, sc in sorted({**self.schedules, **self.paused}.items())],
                "policy": dict(self.policy),
                **({"removed": self.removed, "restorable_until": self.restorable_until, "purged": self.purged}
                   if self.removed else {})}


@dataclass(frozen=True)
class Dataset:
    """A path as the agents see it; `on` limits which peers may back it up (empty: any agent)."""

    path: str
    on: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "on": list(self.on), "exclude": list(self.exclude)}

    def to_fields(self, node: str) -> dict[str, Any]:
        return {"node": node, "path": self.path, "on": list(self.on), "exclude": list(self.exclude)}


def check_dataset(fields: dict[str, Any]) -> str:
    path, on, exclude = fields.get("path"), fields.get("on"), fields.get("exclude")
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path or len(path) > 4096:
        return "a data set's path is absolute (as the agents see it)"
    if not isinstance(on, list) or not all(is_peer_id(p) for p in on):
        return "a data set's `on` is a list of peer ids"
    if not isinstance(exclude, list) or len(exclude) > MAX_PATTERNS or not all(
            isinstance(x, str) and 0 < len(x) <= 1024 for x in exclude):
        return "a data set's excludes are patterns"
    return ""


def schedule_from_fields(fields: dict[str, Any]) -> Schedule:
    """Raises UsageError (a bad cron, zone, window) or KeyError/TypeError (a malformed event)."""
    return Schedule(id=str(fields["id"]), node=str(fields["node"]), cron=str(fields["cron"]),
                    every=float(fields["every"]), tz=str(fields["tz"]), window=float(fields["window"]),
                    catch_up=bool(fields["catch_up"]), retries=int(fields["retries"]),
                    retry_delay=float(fields["retry_delay"])).check()


def schedule_fields(sc: Schedule) -> dict[str, Any]:
    out = dataclasses.asdict(sc)
    del out["since"], out["paused"]  # the event's own time says them
    return out


def _check_undo(kind: str, fields: dict[str, Any]) -> str:
    if kind == NODE_DATASET_REMOVE:
        path = fields.get("path")
        return "" if isinstance(path, str) and path.startswith("/") and len(path) <= 4096 else \
            "a data set's path is absolute (as the agents see it)"
    if kind in SCHEDULE_STATE_KINDS:
        return "" if isinstance(fields.get("id"), str) and re.fullmatch(_SCHEDULE_ID, fields["id"]) else \
            "a schedule id is 1 to 16 of a-z 0-9"
    if kind == NODE_REMOVE:
        until = fields.get("until")
        return "" if isinstance(until, int) and not isinstance(until, bool) and until >= 0 else \
            "node.remove needs the time its grace ends (until)"
    return ""


def check_config(kind: str, fields: dict[str, Any]) -> str:
    if kind == NODE_DATASET:
        return check_dataset(fields)
    if kind in UNDO_KINDS:
        return _check_undo(kind, fields)
    if kind == NODE_SCHEDULE:
        if not isinstance(fields.get("id"), str) or not re.fullmatch(_SCHEDULE_ID, fields["id"]):
            return "a schedule id is 1 to 16 of a-z 0-9"
        try:
            schedule_from_fields(fields)
        except (UsageError, KeyError, TypeError, ValueError) as exc:
            return f"bad schedule: {exc}"
        return ""
    keep = fields.get("keep")
    if not isinstance(keep, dict) or not all(k in POLICY_UNITS and isinstance(v, int) and not isinstance(v, bool)
                                             and 0 <= v <= 100_000 for k, v in keep.items()):
        return f"a policy keeps 0 or more of {', '.join(POLICY_UNITS)}"
    return ""


def check_fields(kind: str, fields: dict[str, Any]) -> str:
    """'' when a node event's fields are well formed, else the reason."""
    try:
        check_node_name(fields.get("node", ""))
    except FormatError as exc:
        return str(exc)
    if kind in CONFIG_KINDS:
        return check_config(kind, fields)
    boxes = fields.get("keys")
    if not isinstance(boxes, dict) or not all(is_peer_id(p) and isinstance(b, bytes) for p, b in boxes.items()):
        return f"{kind} needs keys sealed to peers"
    if not isinstance(fields.get("office_keys", b""), bytes):
        return f"{kind}: office_keys must be bytes"
    if kind == NODE_ADD:
        replicas = fields.get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or not 1 <= replicas <= MAX_REPLICAS:
            return f"replicas must be 1 to {MAX_REPLICAS}"
    elif kind in (NODE_GRANT, NODE_REVOKE):
        if not is_peer_id(fields.get("agent")):
            return f"{kind} needs an agent peer id"
        if kind == NODE_REVOKE and not isinstance(fields.get("epoch"), int):
            return "node.revoke needs the new epoch"
    return ""


def derive_nodes(events: list[Event]) -> dict[str, Node]:
    """The nodes in force (not removed), from node events in log order (HLC, feed, seq): the same on
    every peer."""
    return {name: n for name, n in fold_nodes(events).items() if not n.removed}


def fold_nodes(events: list[Event]) -> dict[str, Node]:
    """Every node ever added, removed ones included, from node events in log order.

    Key events (add, grant, revoke) apply whether the node is removed or not: a node's keys are the
    same as if it had never been removed, so removal can never lose them. Configuration events
    (data sets, schedules, policy) on a removed node change nothing, so restore-config brings back
    exactly what was removed."""
    nodes: dict[str, Node] = {}
    for ev in events:
        if ev.kind not in NODE_KINDS or check_fields(ev.kind, ev.fields):
            continue
        f = ev.fields
        node = nodes.get(f["node"])
        t = hlc.wall_ms(ev.hlc) / 1000
        if ev.kind == NODE_ADD:
            if node is None:  # the first add wins; a second add of the name changes nothing
                nodes[f["node"]] = Node(f["node"], f["replicas"], ev.feed, 0, set(), dict(f["keys"]),
                                        f.get("office_keys", b""), int(t))
        elif node is None:
            continue
        elif ev.kind == NODE_GRANT:
            node.agents.add(f["agent"])
            node.boxes.update(f["keys"])
        elif ev.kind == NODE_REVOKE and f["epoch"] > node.epoch:
            node.agents.discard(f["agent"])
            node.epoch = f["epoch"]
            node.boxes = {p: b for p, b in f["keys"].items() if p != f["agent"]}
            node.office_box = f.get("office_keys", b"")
        elif ev.kind in LIFE_KINDS:
            _life(node, ev.kind, f, t)
        elif not node.removed:
            _configure(node, ev.kind, f, t)
    return nodes


def _life(node: Node, kind: str, f: dict[str, Any], t: float) -> None:
    if kind == NODE_REMOVE and not node.removed:
        node.removed, node.restorable_until = t, float(f["until"])
    elif kind == NODE_RESTORE and node.removed and not node.purged and t < node.restorable_until:
        node.removed = node.restorable_until = 0.0
    elif kind == NODE_PURGE and node.removed and not node.purged and t >= node.restorable_until:
        node.purged = t


def _configure(node: Node, kind: str, f: dict[str, Any], t: float) -> None:
    if kind == NODE_DATASET:  # the latest word on a path wins
        node.datasets[f["path"]] = Dataset(f["path"], tuple(f["on"]), tuple(f["exclude"]))
    elif kind == NODE_DATASET_REMOVE:
        node.datasets.pop(f["path"], None)
    elif kind == NODE_SCHEDULE:
        node.paused.pop(f["id"], None)
        node.schedules[f["id"]] = dataclasses.replace(schedule_from_fields(f), since=t)
    elif kind == NODE_SCHEDULE_REMOVE:
        node.schedules.pop(f["id"], None)
        node.paused.pop(f["id"], None)
    elif kind == NODE_SCHEDULE_PAUSE and f["id"] in node.schedules:
        node.paused[f["id"]] = dataclasses.replace(node.schedules.pop(f["id"]), paused=t)
    elif kind == NODE_SCHEDULE_RESUME and f["id"] in node.paused:
        # Counted from the resume: the slots missed while paused are not run (nor alerted) afterwards.
        node.schedules[f["id"]] = dataclasses.replace(node.paused.pop(f["id"]), paused=0.0, since=t)
    elif kind == NODE_POLICY:
        node.policy = {k: v for k, v in f["keep"].items() if v}
