"""Alerts: what the office is configured to send, which incidents are open, what to send now. Pure.

Configuration is an admin's `office.alerts` event in the control log, so every
peer, and whichever one is coordinator, derives the same. The coordinator alone
sends; every attempt is an `alert.sent` event in the control log and the end of
an incident an `alert.resolved` event. That log is the only memory of what was
alerted: a new coordinator folds it (`history`) and neither repeats an incident
nor loses a failed channel's retry.

An incident has a **subject** (a schedule of a node, a peer, a node's replication)
and at most one incident per subject is open at a time; it stays open, and is
not alerted again, until its condition clears:

- `backup_failed` / `backup_missed`: a schedule's slot whose job failed with no
  retry left (or stayed open past its deadline), or whose window closed with no
  job and no later slot run inside that window (the only slots catch-up skips on
  purpose); the coordinator's `job.missed` for the slot gives the reason.
  Consecutive bad slots of one schedule are one incident, closed by the
  schedule's next successful slot: a schedule every five minutes failing all
  night is one e-mail, not a hundred.
- `backup_partial`: a node's latest finished scheduled backup saved its snapshots without some
  files (core/jobs.py PARTIAL). Consecutive partial backups of a node are one incident, closed by
  its next scheduled backup that takes every file.
- `peer_dead`: a member silent for longer than `peer_dead_after`; closed when it
  is heard again (its next death is a new incident).
- `under_replicated`: files of a node left short of R copies by the repair for
  longer than `under_replicated_after`; closed by a round that finds none.
"""

from __future__ import annotations

import bisect
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
from peerbackup.core.jobs import BACKUP, DONE, FAILED, OPEN, PARTIAL, JobState, tally
from peerbackup.core.nodes import Node
from peerbackup.core.schedule import Schedule, job_id, retry_at, slots_after
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
MAX_ATTEMPTS = 10  # a channel still failing after this many attempts is given up (the log says so)
MAX_BACKOFF = 3600.0
HORIZON = 2 * 86400.0  # slots older than this (plus their window) are never looked at again

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


# ---- evaluation --------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Observed:
    """What the coordinator knows now, besides the logs."""

    nodes: dict[str, Node]
    jobs: dict[str, dict[str, JobState]]  # node -> its jobs (core/jobs.py fold)
    dead: dict[str, float]  # member peer id -> dead since (only members dead now)
    names: dict[str, str]  # peer id -> name, for messages
    under: dict[str, tuple[int, float]] | None  # node -> (files short, since) by the last repair; None: no round yet
    open_grace: float = 600.0  # a job still open this long after its deadline counts as failed
    # node -> (schedule, slot) -> its job.missed fields (core/nodelog.missed_slots): why the slot never started
    missed: dict[str, dict[tuple[str, int], dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    send: list[Alert]
    resolve: list[Incident]


def _slot_outcome(sc: Schedule, t: float, st: JobState | None, job_slots: list[float], now: float,
                  grace: float, missed: str = "") -> tuple[str, str] | None:
    """(kind, why) when slot t is a failure or a miss now, None when it is fine or not decided yet."""
    if st is None:
        if now < t + sc.window:
            return None  # it may still start
        i = bisect.bisect_right(job_slots, t)
        if i < len(job_slots) and job_slots[i] < t + sc.window:
            return None  # a later slot ran inside its window: what catch-up does on purpose
        # The coordinator's job.missed says why (no agent alive, ...); without one, no coordinator ran then.
        return BACKUP_MISSED, f"no backup started within its {human(sc.window)} window" + (
            f" ({missed})" if missed else "")
    if st.state == FAILED:
        attempt = int(st.fields.get("attempt", 1))
        if retry_at(sc, t, attempt) is not None and now < t + sc.window:
            return None  # the coordinator retries it
        reason = str(st.result.get("reason", "")) or "no reason given"
        return BACKUP_FAILED, f"failed after {attempt} attempt{'s' if attempt > 1 else ''}: {reason}"
    if st.state == OPEN and st.deadline and now >= st.deadline + grace:
        # The coordinator logs such a job's slot missed, with its agent's name (office/jobs/scheduler.py).
        return BACKUP_FAILED, f"still not finished {human(now - st.deadline)} after its deadline" + (
            f" ({missed})" if missed else "")
    return None


def _schedule(node: Node, sc: Schedule, jobs: dict[str, JobState], cfg: AlertConfig, now: float,
              grace: float, open_: Incident | None, missed: dict[tuple[str, int], dict[str, Any]] | None = None,
              ) -> tuple[Alert | None, bool]:
    """(the new incident of this schedule, whether its open incident is over)."""
    by_slot: dict[float, JobState] = {}
    for st in jobs.values():
        f = st.fields
        # A slot counts only as the job's own id names it (ids are hash(node, schedule, slot)): a slot an
        # agent wrote into a start of its own (2**40, say) must not move "last done" into the future.
        if f.get("schedule") == sc.id and isinstance(f.get("slot"), int) and not isinstance(f["slot"], bool) \
                and job_id(node.name, sc.id, f["slot"]) == st.job:
            by_slot[float(f["slot"])] = st
    last_done = max((t for t, st in by_slot.items() if st.state == DONE), default=0.0)
    if open_ is not None:
        return None, last_done > open_.slot
    lo = max(sc.since, last_done, cfg.since - sc.window, now - HORIZON - sc.window)
    job_slots = sorted(by_slot)
    bad = []
    for t in slots_after(sc, lo, now):
        # By job id first: a job whose dispatch never reached us is known by its job.started alone, which
        # names no slot.
        found = jobs.get(job_id(node.name, sc.id, t)) or by_slot.get(t)
        why = str((missed or {}).get((sc.id, int(t)), {}).get("reason", ""))[:500]
        out = _slot_outcome(sc, t, found, job_slots, now, grace, why)
        if out is not None:
            bad.append((t, *out))
    if not bad:
        return None, False
    t, kind, why = bad[0]
    more = f" ({len(bad) - 1} later slot{'s' if len(bad) > 2 else ''} not backed up either)" if len(bad) > 1 else ""
    subject = f"backup:{node.name}/{sc.id}"
    what = "failed" if kind == BACKUP_FAILED else "was missed"
    message = f"The backup of {node.name} (schedule {sc.id}) for {iso(t)} {what}: {why}{more}."
    return Alert(f"{subject}:{int(t)}", kind, subject, message, t, node=node.name, slot=int(t)), False


def _partial(node: Node, jobs: dict[str, JobState], cfg: AlertConfig, open_: Incident | None,
             ) -> tuple[Alert | None, bool]:
    """(the new partial-backup incident of this node, whether its open one is over), from its scheduled
    backups that saved snapshots: the latest partial opens one (once), the latest full one closes it."""
    ended = sorted((st for st in jobs.values() if st.state == DONE and st.kind == BACKUP
                    and "schedule" in st.fields), key=lambda st: st.ended_ms)
    if not ended:
        return None, False
    if open_ is not None:
        return None, ended[-1].outcome == DONE
    streak: list[JobState] = []
    for st in reversed(ended):
        if st.outcome != PARTIAL:
            break
        streak.insert(0, st)
    if not streak or streak[-1].ended_ms / 1000 < cfg.since:
        return None, False
    last, since = streak[-1].result, streak[0].ended_ms / 1000
    failed = [f for f in last.get("failed", []) if isinstance(f, dict)]
    count = last.get("failures", len(failed))
    paths = "; ".join(f"{f.get('path')} ({f.get('reason')})" for f in failed[:5])
    more = f" and {count - min(len(failed), 5)} more" if count > min(len(failed), 5) else ""
    message = (f"The backup of {node.name} ({iso(streak[-1].ended_ms / 1000)}) saved its snapshots without "
               f"{count} file(s) or data set(s): {tally(str(f.get('reason')) for f in failed)}. {paths}{more}. "
               f"`peerbackup log {node.name}` lists them.")
    subject = f"{BACKUP_PARTIAL}:{node.name}"
    if len(message) > 2000:
        message = message[:1999] + "…"
    return Alert(f"{subject}:{int(since)}", BACKUP_PARTIAL, subject, message, since, node=node.name), False


def _retry(inc: Incident, cfg: AlertConfig, retry_delay: float, now: float) -> Alert | None:
    pending = tuple(c for c in inc.pending if c in cfg.channels)
    if not pending or inc.attempts >= MAX_ATTEMPTS:
        return None
    if now < inc.last + min(retry_delay * 2 ** (inc.attempts - 1), MAX_BACKOFF):
        return None
    return Alert(inc.incident, inc.kind, inc.subject, inc.message, inc.since, inc.node, inc.peer, inc.slot,
                 pending, inc.attempts + 1)


def evaluate(now: float, cfg: AlertConfig, seen: Observed, incidents: dict[str, Incident],
             retry_delay: float) -> Plan:
    """The alerts to send now and the open incidents that are over. Nothing when no channel is set."""
    if not cfg.channels:
        return Plan([], [])
    opened = open_by_subject(incidents)
    send: list[Alert] = []
    over: set[str] = set()

    for name, node in sorted(seen.nodes.items()):
        for sid, sc in sorted(node.schedules.items()):
            subject = f"backup:{name}/{sid}"
            alert, closed = _schedule(node, sc, seen.jobs.get(name, {}), cfg, now, seen.open_grace,
                                      opened.get(subject), seen.missed.get(name))
            if closed:
                over.add(subject)
            if alert is not None:
                send.append(alert)
    schedules = {f"backup:{n}/{s}" for n, node in seen.nodes.items() for s in node.schedules}
    over |= {s for s in opened if s.startswith("backup:") and s not in schedules}

    for name, node in sorted(seen.nodes.items()):
        subject = f"{BACKUP_PARTIAL}:{name}"
        alert, closed = _partial(node, seen.jobs.get(name, {}), cfg, opened.get(subject))
        if closed:
            over.add(subject)
        if alert is not None:
            send.append(alert)
    over |= {s for s in opened if s.startswith(f"{BACKUP_PARTIAL}:") and s.split(":", 1)[1] not in seen.nodes}

    for peer, since in sorted(seen.dead.items()):
        subject = f"{PEER_DEAD}:{peer}"
        if subject in opened or now - since < cfg.peer_dead_after:
            continue
        who = seen.names.get(peer, peer)
        send.append(Alert(f"{subject}:{int(since)}", PEER_DEAD, subject,
                          f"Peer {who} ({peer}) has not been heard since {iso(since)} ({human(now - since)}): it is "
                          f"dead to the office, which cannot store on it or give it jobs.", since, peer=peer))
    over |= {s for s in opened if s.startswith(f"{PEER_DEAD}:") and s.split(":", 1)[1] not in seen.dead}

    if seen.under is not None:
        for name, (count, since) in sorted(seen.under.items()):
            subject = f"{UNDER_REPLICATED}:{name}"
            if subject in opened or count <= 0 or now - since < cfg.under_replicated_after:
                continue
            info = seen.nodes.get(name)
            want = f"{info.replicas} " if info is not None else ""
            send.append(Alert(f"{subject}:{int(since)}", UNDER_REPLICATED, subject,
                              f"{count} file{'s' if count != 1 else ''} of backup node {name} have had fewer than "
                              f"{want}live copies since {iso(since)} ({human(now - since)}), and the repair could "
                              f"not add them: add storage peers or room (`peerbackup storage`).", since, node=name))
        over |= {s for s in opened if s.startswith(f"{UNDER_REPLICATED}:")
                 and seen.under.get(s.split(":", 1)[1], (0, 0.0))[0] <= 0}

    for subject, inc in sorted(opened.items()):
        if subject not in over:
            again = _retry(inc, cfg, retry_delay, now)
            if again is not None:
                send.append(again)
    return Plan([a if a.channels else dataclasses.replace(a, channels=cfg.channels) for a in send],
                [opened[s] for s in sorted(over)])
