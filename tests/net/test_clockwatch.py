"""Whose clock is off: only the peer most others refuse is told to fix its own."""

from __future__ import annotations

from peerbackup.net.clockwatch import RECENT, ClockWatch

NOW = 1_800_000_000.0


def test_the_peer_most_others_refuse_is_the_suspect() -> None:
    wrong, healthy = ClockWatch(), ClockWatch()
    # gamma's clock is 10 minutes fast: alpha and beta refuse it; it refuses them (and alpha sees that).
    wrong.refused("alpha", "Timestamp 600 s away from this peer's clock", NOW)
    wrong.refused("beta", "Timestamp 600 s away from this peer's clock", NOW)
    healthy.refused("gamma", "Timestamp -600 s away from this peer's clock", NOW)
    healthy.saw("gamma", 600.0, NOW)
    assert wrong.suspect(NOW, others=2)
    assert not healthy.suspect(NOW, others=2)  # one wrong peer must not stop the healthy ones
    assert healthy.report(NOW) == {"peers_off": {"gamma": 600}, "refused_by": {"gamma": "Timestamp -600 s away "
                                                                                     "from this peer's clock"}}
    # Refusals fade: once the clock is right again, the past does not keep the peer suspect.
    assert not wrong.suspect(NOW + RECENT + 1, others=2)
    assert wrong.report(NOW + RECENT + 1) == {"peers_off": {}, "refused_by": {}}
    # Two peers that refuse each other: neither can tell, both are told.
    a = ClockWatch()
    a.refused("b", "Timestamp 600 s away", NOW)
    assert a.suspect(NOW, others=1)
    assert not ClockWatch().suspect(NOW, others=0)
