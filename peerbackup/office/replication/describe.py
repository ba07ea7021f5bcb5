"""Events as operators read them: the shape `office log`, `log NODE`, the admin API and the dashboard show.

Pure: an event and the names of the peers in, a JSON-ready dict out. Certificates and revocations are opened
with the office key to say whom they name; any other field is shown as JSON can carry it, bytes as hex.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from peerbackup.core import hlc as hlcmod
from peerbackup.core.alerts import ALERT_EVENT_KINDS, OFFICE_ALERTS
from peerbackup.core.certs import Certificate, Revocation
from peerbackup.core.events import Event
from peerbackup.core.logstate import COORDINATOR_CLAIM, MEMBER_ADD, MEMBER_REVOKE
from peerbackup.core.nodes import CONFIG_KINDS, NODE_KINDS
from peerbackup.errors import FormatError, UnsupportedVersion

_HIDDEN = object()


def _for_operators(v: Any, depth: int = 0) -> Any:
    """A field as JSON shows it (bytes as hex), nested lists and maps included (a retention job's groups, a
    partial backup's failed paths); anything else, or deeper than a few levels, is hidden."""
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    if depth < 4 and isinstance(v, list):
        items = [_for_operators(x, depth + 1) for x in v]
        return _HIDDEN if any(x is _HIDDEN for x in items) else items
    if depth < 4 and isinstance(v, dict) and all(isinstance(k, str) for k in v):
        out = {k: _for_operators(x, depth + 1) for k, x in v.items()}
        return _HIDDEN if any(x is _HIDDEN for x in out.values()) else out
    return _HIDDEN


def describe(ev: Event, names: dict[str, str], office_key: bytes) -> dict[str, Any]:
    """One event as operators read it (`office log`, `log NODE`, the dashboard): what its fields mean, peers
    by name (`names`: peer id -> name), bytes as hex; an event that does not decode says so."""
    fields: dict[str, Any] = {}
    try:
        if ev.kind == MEMBER_ADD:
            cert = Certificate.from_bytes(ev.fields["cert"], office_key)
            fields = {"peer_id": cert.peer_id, "name": cert.name, "roles": list(cert.roles), "rank": cert.rank}
        elif ev.kind == MEMBER_REVOKE:
            rev = Revocation.from_bytes(ev.fields["revocation"], office_key)
            fields = {"peer_id": rev.peer_id, "name": names.get(rev.peer_id), "reason": rev.reason,
                      "cutoff": ev.fields["cutoff"]}
        elif ev.kind == COORDINATOR_CLAIM:
            fields = {"term": ev.fields["term"]}
        elif ev.kind in CONFIG_KINDS or ev.kind in ALERT_EVENT_KINDS or ev.kind == OFFICE_ALERTS:
            fields = {k: v for k, v in ev.fields.items() if isinstance(v, (str, int, float, bool, list, dict))}
        elif ev.kind in NODE_KINDS:
            f = ev.fields
            fields = {"node": f["node"], "replicas": f.get("replicas"), "agent": names.get(f.get("agent", ""),
                      f.get("agent")), "epoch": f.get("epoch"),
                      "keys_for": sorted(names.get(p, p) for p in f["keys"])}
            fields = {k: v for k, v in fields.items() if v is not None}
        else:
            fields = {k: shown for k, v in ev.fields.items() if (shown := _for_operators(v)) is not _HIDDEN}
    except (FormatError, UnsupportedVersion, KeyError, TypeError):
        fields = {"undecodable": True}
    when = dt.datetime.fromtimestamp(hlcmod.wall_ms(ev.hlc) / 1000, dt.UTC)
    return {"time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"), "hlc": ev.hlc,
            "writer": ev.feed, "writer_name": names.get(ev.feed), "seq": ev.seq, "kind": ev.kind,
            "fields": fields, "id": ev.id.hex()}
