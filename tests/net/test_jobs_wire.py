"""The optional fields added to job messages after their formats were frozen (tests/fixtures/wire.json):
absent, they decode to the old meaning and are not sent, so old peers' bytes stay the same; present, they
round-trip; malformed, they are refused with the field named."""

from __future__ import annotations

import pytest

from peerbackup.core import codec
from peerbackup.errors import Malformed
from peerbackup.net.proto.jobs import BACKUP, ActAsReply, Dispatch

TOKEN = (3, "AAAA-BBBB-CCCC-DDDD")


def test_a_dispatch_carries_the_coordinators_configuration_digest_only_when_it_has_one() -> None:
    old = Dispatch("backup-x-1", "accounts", TOKEN, 10**12, BACKUP, False, 1)
    assert b"config" not in old.to_wire() and Dispatch.from_wire(old.to_wire()).config == b""
    new = Dispatch("backup-x-1", "accounts", TOKEN, 10**12, BACKUP, False, 1, b"\x01" * 32)
    assert Dispatch.from_wire(new.to_wire()) == new
    for bad in ("digest", b"\x00" * 65, 7):
        body = codec.pack({**codec.unpack(old.to_wire()), "config": bad})
        with pytest.raises(Malformed, match="config"):
            Dispatch.from_wire(body)


def test_an_act_as_reply_carries_the_issued_events_clock_only_when_it_has_one() -> None:
    old = ActAsReply(b"t" * 200)
    assert b"hlc" not in old.to_wire() and ActAsReply.from_wire(old.to_wire()).hlc == 0
    new = ActAsReply(b"t" * 200, 123_456 << 16)
    assert ActAsReply.from_wire(new.to_wire()) == new
    for bad in (-1, 2**63, True, "1"):
        body = codec.pack({**codec.unpack(old.to_wire()), "hlc": bad})
        with pytest.raises(Malformed, match="hlc"):
            ActAsReply.from_wire(body)
