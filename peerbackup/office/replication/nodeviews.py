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

from collections.abc import Callable
from typing import Any

from peerbackup.core.events import Event
from peerbackup.core.forgotten import forgotten
from peerbackup.core.jobs import JobState, fold
from peerbackup.core.logstate import OfficeConfig
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

    def _view(self, what: str, node: str, compute: Callable[[list[Event], OfficeConfig], Any]) -> Any:
        version = self.version(node)
        cached = self._cache.get((what, node))
        if cached is None or cached[0] != version:
            value = compute(self.logs.state.ordered(node_log(node)), self.logs.state.config())
            cached = self._cache[(what, node)] = (version, value)
        return cached[1]

    def job_states(self, node: str) -> dict[str, JobState]:
        """Every job in the node's log and how it stands."""
        def compute(events: list[Event], config: OfficeConfig) -> dict[str, JobState]:
            info = config.nodes.get(node)
            agents = frozenset(info.agents) if info is not None else frozenset()
            return fold(events, set(config.coordinator_terms), agents)
        states: dict[str, JobState] = self._view("jobs", node, compute)
        return states

    def missed_slots(self, node: str) -> dict[tuple[str, int], dict[str, Any]]:
        """The node's slots logged missed: why each never started."""
        slots: dict[tuple[str, int], dict[str, Any]] = self._view(
            "missed", node, lambda events, config: missed_slots(events, config.coordinator_terms))
        return slots

    def forgotten(self, node: str) -> set[str]:
        """Id prefixes of the node's snapshots that dispatched retention jobs forgot."""
        prefixes: set[str] = self._view(
            "forgotten", node, lambda events, config: forgotten(events, config.coordinator_terms))
        return prefixes
