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
KEY_KINDS = (NODE_ADD, NODE_GRANT, NODE_REVOKE)
CONFIG_KINDS = (NODE_DATASET, NODE_SCHEDULE, NODE_POLICY)
NODE_KINDS = KEY_KINDS + CONFIG_KINDS
POLICY_UNITS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
MAX_PATTERNS = 256
DEFAULT_REPLICAS = 2
MAX_REPLICAS = 16

# Lower-case letters, digits, dot, dash, underscore; no leading dot: a node name becomes a
# directory name on storage peers, so nothing in it may climb out or hide.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


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

    @property
    def holders(self) -> set[str]:
        return set(self.boxes)

    def describe(self) -> dict[str, Any]:
        return {"node": self.name, "replicas": self.replicas, "epoch": self.epoch, "created": self.created,
                "agents": sorted(self.agents), "holders": sorted(self.holders), "created_by": self.created_by,
                "datasets": [d.describe() for _, d in sorted(self.datasets.items())],
                "schedules": [dataclasses.asdict(sc) for _, sc in sorted(self.schedules.items())],
                "policy": dict(self.policy)}


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
    del out["since"]  # the event's own time says it
    return out


def check_config(kind: str, fields: dict[str, Any]) -> str:
    if kind == NODE_DATASET:
        return check_dataset(fields)
    if kind == NODE_SCHEDULE:
        if not isinstance(fields.get("id"), str) or not re.fullmatch(r"[a-z0-9]{1,16}", fields["id"]):
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
    """The nodes, from node events in log order (HLC, feed, seq): the same on every peer."""
    nodes: dict[str, Node] = {}
    for ev in events:
        if ev.kind not in NODE_KINDS or check_fields(ev.kind, ev.fields):
            continue
        f = ev.fields
        node = nodes.get(f["node"])
        if ev.kind == NODE_ADD:
            if node is None:  # the first add wins; a second add of the name changes nothing
                nodes[f["node"]] = Node(f["node"], f["replicas"], ev.feed, 0, set(), dict(f["keys"]),
                                        f.get("office_keys", b""), hlc.wall_ms(ev.hlc) // 1000)
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
        elif ev.kind == NODE_DATASET:  # the latest word on a path wins
            node.datasets[f["path"]] = Dataset(f["path"], tuple(f["on"]), tuple(f["exclude"]))
        elif ev.kind == NODE_SCHEDULE:
            node.schedules[f["id"]] = dataclasses.replace(schedule_from_fields(f), since=hlc.wall_ms(ev.hlc) / 1000)
        elif ev.kind == NODE_POLICY:
            node.policy = {k: v for k, v in f["keep"].items() if v}
    return nodes
