"""The office's alert configuration (core/alerts.py): checked, round-tripped, the latest one winning, and
who may write it or record an alert sent (core/logstate.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from peerbackup.core.alerts import (
    ALERT_SENT,
    EMAIL,
    OFFICE_ALERTS,
    OK,
    PEER_DEAD,
    WEBHOOK,
    Alert,
    AlertConfig,
    derive_config,
    parse_smtp,
)
from peerbackup.core.certs import COORDINATOR_ROLES, ROLES, Certificate
from peerbackup.core.events import CONTROL_LOG
from peerbackup.core.identity import SigningKey
from peerbackup.core.logstate import ACCEPTED, REFUSED, LogState
from peerbackup.errors import UsageError
from tests.core._alerts import CFG, T0, Log


def test_a_full_configuration_round_trips_and_names_its_channels() -> None:
    cfg = AlertConfig.from_fields(CFG.to_fields())
    assert cfg == dataclasses.replace(CFG, since=0.0)
    assert cfg.channels == (WEBHOOK, EMAIL)
    assert AlertConfig.from_fields({"webhook": "https://hooks.example.org/x?y=1"}).channels == (WEBHOOK,)
    assert AlertConfig().channels == ()  # nothing configured: alerts are off


@pytest.mark.parametrize(("fields", "message"), [
    ({"webhook": "ftp://example.org/x"}, "must start with http:// or https://"),
    ({"webhook": "http:///path"}, "names no host"),
    ({"webhook": "http://example.org:99999/"}, "bad port"),
    ({"webhook": "http://exa mple.org/"}, "without spaces"),
    ({"smtp_host": "mail.example.org", "mail_from": "a@example.org"}, "at least one recipient"),
    ({"smtp_host": "mail.example.org", "mail_to": ["b@example.org"]}, "need a sender"),
    ({"smtp_host": "mail.example.org", "mail_from": "a@example.org", "mail_to": ["not-an-address"]},
     "'not-an-address' is not an e-mail address"),
    ({"smtp_host": "mail.example.org", "mail_from": "a@example.org", "mail_to": ["b@example.org\r\nBcc: x@y.z"]},
     "is not an e-mail address"),
    ({"smtp_host": "bad host!", "mail_from": "a@example.org", "mail_to": ["b@example.org"]}, "a host name or an IP"),
    ({"smtp_host": "h", "smtp_port": 0, "mail_from": "a@example.org", "mail_to": ["b@example.org"]}, "1 to 65535"),
    ({"mail_to": ["b@example.org"]}, "need an SMTP server"),
    ({"webhook": "http://h/", "peer_dead_after": 0}, "peer-dead-after must be from 1 s to 30 days"),
    ({"webhook": "http://h/", "under_replicated_after": True}, "under-replicated-after must be"),
    ({"webhook": "http://h/", "password": "x"}, "unknown alert setting(s): password"),
])
def test_bad_configurations_are_refused_saying_why(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=None) as exc:
        AlertConfig.from_fields(fields)
    assert message in str(exc.value)


def test_smtp_addresses_parse_with_a_default_port() -> None:
    assert parse_smtp("mail.example.org") == ("mail.example.org", 25)
    assert parse_smtp("127.0.0.1:2525") == ("127.0.0.1", 2525)
    assert parse_smtp("[::1]:587") == ("::1", 587)
    for bad in ("mail:0", "mail:70000", "mail:x", "[::1]x"):
        with pytest.raises(UsageError):
            parse_smtp(bad)


def test_the_latest_configuration_wins_and_since_is_the_first() -> None:
    log = Log(CONTROL_LOG)
    log.add(OFFICE_ALERTS, T0, **CFG.to_fields())
    log.add(OFFICE_ALERTS, T0 + 5, webhook="ftp://refused")  # malformed: ignored
    log.add(OFFICE_ALERTS, T0 + 10, webhook="https://new.example.org/")
    cfg = derive_config(log.events)
    assert (cfg.webhook, cfg.smtp_host, cfg.since) == ("https://new.example.org/", "", T0)


# ---- who may write what (core/logstate.py) -------------------------------------------------

OFFICE_KEY = SigningKey(b"\x51" * 32)
ADMIN, COORD, PLAIN = SigningKey(b"\x61" * 32), SigningKey(b"\x62" * 32), SigningKey(b"\x65" * 32)
NOW = 1_700_000_000


def test_the_log_checks_who_configures_and_who_records_alerts() -> None:
    state = LogState(office_key=OFFICE_KEY.public_key, max_ahead_ms=120_000)
    for key, roles in ((ADMIN, ROLES), (COORD, COORDINATOR_ROLES), (PLAIN, ("agent",))):
        state.add_cert(Certificate.issue(OFFICE_KEY, key.public_key, "p", roles, 100, NOW))
    digest = state.config().digest()
    ok = state.append(ADMIN, CONTROL_LOG, OFFICE_ALERTS, CFG.to_fields(), NOW * 1000)
    assert ok.verdict == ACCEPTED
    assert state.config().alerts.webhook == CFG.webhook and state.config().digest() != digest
    out = state.append(COORD, CONTROL_LOG, OFFICE_ALERTS, CFG.to_fields(), NOW * 1000)
    assert out.verdict == REFUSED and "not an admin and cannot change the office's alerts" in out.reason
    out = state.append(ADMIN, CONTROL_LOG, OFFICE_ALERTS, {"webhook": "gopher://x"}, NOW * 1000)
    assert out.verdict == REFUSED and "must start with http:// or https://" in out.reason
    record = Alert("peer_dead:X:1", PEER_DEAD, "peer_dead:X", "m", NOW).record({WEBHOOK: OK})
    assert state.append(COORD, CONTROL_LOG, ALERT_SENT, record, NOW * 1000).verdict == ACCEPTED
    out = state.append(PLAIN, CONTROL_LOG, ALERT_SENT, record, NOW * 1000)
    assert out.verdict == REFUSED and "cannot record alerts" in out.reason
    out = state.append(COORD, CONTROL_LOG, ALERT_SENT, {**record, "results": {}}, NOW * 1000)
    assert out.verdict == REFUSED and "a result for each channel" in out.reason
