"""What the daemon reads of a node's log, folded once per change of that log.

The job fold (core/jobs.py), the slots logged missed (core/nodelog.py) and the
snapshots retention jobs forgot (core/forgotten.py) are asked many times per
heartbeat: by the coordinator (redispatch, retries, retention, alerts), by a
holder for every snapshot write (the attempt fence) and every read, by the
dashboard. Each is kept until the log changes: its writers' heads name its
content (a revocation or a fork that drops events moves them too), and the
coordinator claims and the node's agents, which decide what counts, are part of
the version. Read-only for the callers.
"""

from __future__ import annotations

from typing import Any

from peerbackup.core.forgotten import forgotten
from peerbackup.core.jobs import JobState, fold
from peerbackup.core.nodelog import missed_slots, node_log
from peerbackup.office.replication.service import LogService

Version = tuple[object, ...]


class NodeViews:
    def __init__(self, logs: LogService) -> None:
        self.logs = logs
        self._cache: dict[tuple[str, str], tuple[Version, Any]] = {}  # (what, node) -> (version, value)

    def version(self, node: str) -> Version:
        log = node_log(node)
        config = self.logs.state.config()
        info = config.nodes.get(node)
        agents = frozenset(info.agents) if info is not None else frozenset()
        # A dispatch counts once its claim arrives (and no more if a removal drops the claim).
        return (hash(tuple(config.coordinator_terms)), hash(agents), *sorted(
            (feed, seq) for (name, feed), seq in self.logs.state.heads.items() if name == log))

    def _view(self, what: str, node: str) -> Any:
        version = self.version(node)
        cached = self._cache.get((what, node))
        if cached is not None and cached[0] == version:
            return cached[1]
        config = self.logs.state.config()
        events = self.logs.state.ordered(node_log(node))
        claims = config.coordinator_terms
        if what == "jobs":
            info = config.nodes.get(node)
            value: Any = fold(events, set(claims), frozenset(info.agents) if info is not None else frozenset())
        elif what == "missed":
            value = missed_slots(events, claims)
        else:
            value = forgotten(events, claims)
        self._cache[(what, node)] = (version, value)
        return value

    def job_states(self, node: str) -> dict[str, JobState]:
        """Every job in the node's log and how it stands."""
        states: dict[str, JobState] = self._view("jobs", node)
        return states

    def missed_slots(self, node: str) -> dict[tuple[str, int], dict[str, Any]]:
        """The node's slots logged missed: why each never started."""
        slots: dict[tuple[str, int], dict[str, Any]] = self._view("missed", node)
        return slots

    def forgotten(self, node: str) -> set[str]:
        """Id prefixes of the node's snapshots that dispatched retention jobs forgot."""
        prefixes: set[str] = self._view("forgotten", node)
        return prefixes
