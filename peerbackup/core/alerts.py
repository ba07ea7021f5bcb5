"""Alerts: what the office is configured to send, and the record of what it sent. Pure.

Configuration is an admin's `office.alerts` event in the control log, so every
peer, and whichever one is coordinator, derives the same. The coordinator alone
sends; every attempt is an `alert.sent` event in the control log and the end of
an incident an `alert.resolved` event. That log is the only memory of what was
alerted: a new coordinator folds it (`history`) and neither repeats an incident
nor loses a failed channel's retry. Which incidents are open and what to send now
is core/alertrules.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from peerbackup.core import hlc
from peerbackup.core.events import Event
from peerbackup.errors import UsageError

OFFICE_ALERTS = "office.alerts"  # the configuration (admins)
ALERT_SENT, ALERT_RESOLVED = "alert.sent", "alert.resolved"  # the record (the coordinator; admins for tests)
ALERT_EVENT_KINDS = (ALERT_SENT, ALERT_RESOLVED)

BACKUP_FAILED, BACKUP_MISSED, BACKUP_PARTIAL = "backup_failed", "backup_missed", "backup_partial"
PEER_DEAD, UNDER_REPLICATED, TEST = "peer_dead", "under_replicated", "test"
KINDS = (BACKUP_FAILED, BACKUP_MISSED, BACKUP_PARTIAL, PEER_DEAD, UNDER_REPLICATED, TEST)
WEBHOOK, EMAIL = "webhook", "email"
CHANNELS = (WEBHOOK, EMAIL)
OK = "ok"

DEFAULT_AFTER = 3600.0
MIN_AFTER, MAX_AFTER = 1.0, 30 * 86400.0
MAX_RECIPIENTS = 20

_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)*\.?")


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def human(seconds: float) -> str:
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.1f} {unit}".replace(".0 ", " ")
    return f"{s} s"


# ---- configuration ---------------------------------------------------------------------


def check_webhook(url: str) -> str:
    if not url:
        return url
    if len(url) > 2048 or any(c.isspace() or ord(c) < 32 for c in url):
        raise UsageError(f"webhook {url[:80]!r}: a URL of at most 2048 characters, without spaces")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"webhook {url[:80]!r}: the URL must start with http:// or https://")
    try:
        host, port = parts.hostname, parts.port  # .port raises ValueError for a bad or out-of-range port
    except ValueError:
        raise UsageError(f"webhook {url[:80]!r}: bad port") from None
    del port
    if not host:
        raise UsageError(f"webhook {url[:80]!r}: the URL names no host")
    return url


def check_host(host: str) -> str:
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not _HOST.fullmatch(host):
        raise UsageError(f"SMTP host {host[:80]!r}: a host name or an IP address")
    return host


def check_address(address: str, what: str) -> str:
    # Checked strictly: the address goes into a mail header, so no line break, comma or angle bracket may pass.
    if not isinstance(address, str) or len(address) > 254 or not _ADDRESS.fullmatch(address):
        raise UsageError(f"{what} {str(address)[:80]!r} is not an e-mail address (name@example.org)")
    return address


def parse_smtp(text: str) -> tuple[str, int]:
    """HOST, HOST:PORT or [IPv6]:PORT -> (host, port); port 25 by default."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if not rest else "bad")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if port and (not port.isdigit() or not 1 <= int(port) <= 65535):
        raise UsageError(f"--smtp {text!r}: the port must be a number from 1 to 65535")
    return check_host(host), int(port or 25)


def _number(fields: dict[str, Any], key: str, default: float) -> float:
    value = fields.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not MIN_AFTER <= value <= MAX_AFTER:
        raise UsageError(f"{key.replace('_', '-')} must be from 1 s to 30 days (in seconds), not {value!r}")
    return float(value)


@dataclass(frozen=True)
class AlertConfig:
    """The office's alert channels and thresholds. No SMTP credentials: the control log is replicated to
    every member and kept forever, so a password would live on every machine; use a relay that accepts
    the office's machines (most office mail servers and smart hosts do)."""

    webhook: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_starttls: bool = False
    mail_from: str = ""
    mail_to: tuple[str, ...] = ()
    peer_dead_after: float = DEFAULT_AFTER
    under_replicated_after: float = DEFAULT_AFTER
    since: float = 0.0  # when alerts were first configured (its event's time): nothing older is alerted

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c for c, on in ((WEBHOOK, bool(self.webhook)), (EMAIL, bool(self.smtp_host))) if on)

    def to_fields(self) -> dict[str, Any]:
        return {"webhook": self.webhook, "smtp_host": self.smtp_host, "smtp_port": self.smtp_port,
                "smtp_starttls": self.smtp_starttls, "mail_from": self.mail_from, "mail_to": list(self.mail_to),
                "peer_dead_after": self.peer_dead_after, "under_replicated_after": self.under_replicated_after}

    def describe(self) -> dict[str, Any]:
        return {**self.to_fields(), "channels": list(self.channels), "since": self.since}

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> AlertConfig:
        """Raises UsageError saying what is wrong: the admin API and the log's check share it."""
        if not isinstance(fields, dict):
            raise UsageError("the alert configuration is a map")
        unknown = set(fields) - set(cls().to_fields())
        if unknown:
            raise UsageError(f"unknown alert setting(s): {', '.join(sorted(map(str, unknown)))}")
        webhook, host = fields.get("webhook", ""), fields.get("smtp_host", "")
        port, tls = fields.get("smtp_port", 25), fields.get("smtp_starttls", False)
        sender, to = fields.get("mail_from", ""), fields.get("mail_to", [])
        if not isinstance(webhook, str) or not isinstance(host, str) or not isinstance(sender, str):
            raise UsageError("webhook, smtp_host and mail_from are strings")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise UsageError(f"the SMTP port must be a number from 1 to 65535, not {port!r}")
        if not isinstance(tls, bool):
            raise UsageError("smtp_starttls is true or false")
        if not isinstance(to, list | tuple) or len(to) > MAX_RECIPIENTS:
            raise UsageError(f"mail_to is a list of at most {MAX_RECIPIENTS} addresses")
        if host:
            check_host(host)
            if not to:
                raise UsageError("e-mail alerts need at least one recipient (--mail-to)")
            if not sender:
                raise UsageError("e-mail alerts need a sender address (--mail-from)")
        elif to or sender or tls:
            raise UsageError("--mail-to, --mail-from and --starttls need an SMTP server (--smtp HOST:PORT)")
        recipients = tuple(check_address(a, "recipient") for a in to)
        if len(set(recipients)) != len(recipients):
            raise UsageError("a recipient is listed twice")
        return cls(check_webhook(webhook), host, port, tls, check_address(sender, "sender") if sender else "",
                   recipients, _number(fields, "peer_dead_after", DEFAULT_AFTER),
                   _number(fields, "under_replicated_after", DEFAULT_AFTER))


def check_config(fields: dict[str, Any]) -> str:
    """'' when an office.alerts event is well formed, else the reason (the log refuses it)."""
    try:
        AlertConfig.from_fields(fields)
    except UsageError as exc:
        return f"bad alert configuration: {exc}"
    return ""


def derive_config(events: Iterable[Event]) -> AlertConfig:
    """The latest valid office.alerts event wins (log order, the same on every peer)."""
    out, first = AlertConfig(), 0.0
    for ev in events:
        if ev.kind != OFFICE_ALERTS or check_config(ev.fields):
            continue
        first = first or hlc.wall_ms(ev.hlc) / 1000
        out = AlertConfig.from_fields(ev.fields)
    return dataclasses.replace(out, since=first)


# ---- the record: alert.sent / alert.resolved ----------------------------------------------


def _short_str(value: Any, limit: int) -> bool:
    return isinstance(value, str) and len(value) <= limit


def check_event(kind: str, fields: dict[str, Any]) -> str:
    """'' when an alert.sent or alert.resolved event is well formed, else the reason."""
    if not _short_str(fields.get("incident"), 200) or not fields["incident"] \
            or not _short_str(fields.get("subject"), 200):
        return f"{kind} needs an incident key and a subject"
    if kind == ALERT_RESOLVED:
        return ""
    results = fields.get("results")
    if fields.get("kind") not in KINDS or not _short_str(fields.get("message"), 2000):
        return "alert.sent needs a known kind and a message"
    if not isinstance(results, dict) or not results or not all(
            k in CHANNELS and _short_str(v, 500) for k, v in results.items()):
        return "alert.sent needs a result for each channel it tried"
    for key in ("slot", "attempt"):
        if isinstance(fields.get(key), bool) or not isinstance(fields.get(key, 0), int):
            return f"alert.sent: {key} is an integer"
    if not isinstance(fields.get("since", 0), int | float) or not all(
            _short_str(fields.get(k, ""), 64) for k in ("node", "peer")):
        return "alert.sent: bad since, node or peer"
    return ""


@dataclass
class Incident:
    incident: str
    kind: str
    subject: str
    message: str
    since: float
    node: str = ""
    peer: str = ""
    slot: int = 0
    channels: tuple[str, ...] = ()  # the channels of its first attempt: the ones it must reach
    delivered: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)  # channel -> its last error
    attempts: int = 0
    first: float = 0.0  # when it was first sent
    last: float = 0.0  # when it was last tried
    resolved: float = 0.0  # when it was closed, 0 while open

    @property
    def pending(self) -> tuple[str, ...]:
        return tuple(c for c in self.channels if c not in self.delivered)

    def describe(self) -> dict[str, Any]:
        return {"incident": self.incident, "kind": self.kind, "subject": self.subject, "message": self.message,
                "since": self.since, "node": self.node, "peer": self.peer, "channels": list(self.channels),
                "delivered": sorted(self.delivered), "errors": dict(self.errors), "attempts": self.attempts,
                "first": self.first, "last": self.last, "resolved": self.resolved or None}


def history(events: Iterable[Event]) -> dict[str, Incident]:
    """Every incident alerted, from the control log in log order. Test alerts are not incidents."""
    out: dict[str, Incident] = {}
    for ev in events:
        if ev.kind not in ALERT_EVENT_KINDS or check_event(ev.kind, ev.fields):
            continue
        f, at = ev.fields, hlc.wall_ms(ev.hlc) / 1000
        inc = out.get(f["incident"])
        if ev.kind == ALERT_RESOLVED:
            if inc is not None and not inc.resolved:
                inc.resolved = at
            continue
        if f["kind"] == TEST:
            continue
        if inc is None:
            inc = out[f["incident"]] = Incident(f["incident"], f["kind"], f["subject"], f["message"],
                                                float(f.get("since", 0)), f.get("node", ""), f.get("peer", ""),
                                                int(f.get("slot", 0)), tuple(c for c in CHANNELS if c in f["results"]),
                                                first=at)
        inc.attempts += 1
        inc.last = max(inc.last, at)
        for channel, result in f["results"].items():
            if result == OK:
                inc.delivered.add(channel)
                inc.errors.pop(channel, None)
            elif channel not in inc.delivered:
                inc.errors[channel] = result
    return out


def open_by_subject(incidents: dict[str, Incident]) -> dict[str, Incident]:
    return {inc.subject: inc for inc in sorted(incidents.values(), key=lambda i: i.first) if not inc.resolved}


@dataclass(frozen=True)
class Alert:
    """One alert to send now: a new incident, or a retry of an open one on the channels it has not reached."""

    incident: str  # stable key: the same on every coordinator
    kind: str
    subject: str
    message: str
    since: float  # when the condition began
    node: str = ""
    peer: str = ""
    slot: int = 0
    channels: tuple[str, ...] = ()
    attempt: int = 1

    def record(self, results: dict[str, str]) -> dict[str, Any]:
        """The alert.sent event's fields."""
        return {"incident": self.incident, "kind": self.kind, "subject": self.subject, "message": self.message,
                "since": round(self.since, 3), "node": self.node, "peer": self.peer, "slot": self.slot,
                "attempt": self.attempt, "results": {c: r[:500] for c, r in results.items()}}

    def payload(self, office: str, now: float) -> dict[str, Any]:
        """The webhook's JSON body (docs/alerts.md): stable keys, null for what does not apply."""
        return {"kind": self.kind, "incident": self.incident, "office": office, "node": self.node or None,
                "peer": self.peer or None, "message": self.message, "since": iso(self.since), "time": iso(now),
                "attempt": self.attempt}
