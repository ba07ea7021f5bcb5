"""A node's log is folded once per change, and every reader shares the fold (office/replication/nodeviews.py): a holder
used to fold the whole log again for every snapshot write it fenced and every snapshot read it checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from peerbackup.core.jobs import fold
from peerbackup.office.replication import nodeviews
from tests.daemon.harness import await_for
from tests.daemon.trio import NODE, Records, new_logger, run, trio


def test_a_nodes_log_is_folded_once_per_change_for_every_reader(
        tmp_path: Path, records: Records, monkeypatch: pytest.MonkeyPatch) -> None:
    folds: list[str] = []

    def counting_fold(*args: Any) -> Any:
        folds.append("fold")
        return fold(*args)

    monkeypatch.setattr(nodeviews, "fold", counting_fold)

    async def scenario() -> None:
        async with trio(tmp_path, new_logger(records)) as t:
            g = t.gamma
            folds.clear()
            for _ in range(5):  # the coordinator's side, a holder's fence and its reads, the dashboard
                g.jobs.job_states(NODE)
                g.storage.forgotten(NODE)
                g.storage._check_attempt(t.beta.ident.peer_id, NODE, t.token(t.term()))  # a job not in the log
            assert len(folds) <= 1, folds
            before = len(folds)
            await t.alpha.nodes.revoke(NODE, t.beta.ident.peer_id)  # the node's agents change: a new version
            await await_for(lambda: t.beta.ident.peer_id not in g.nodes.nodes()[NODE].agents, 20, "gamma learning it")
            g.jobs.job_states(NODE)
            g.jobs.job_states(NODE)
            assert len(folds) == before + 1, folds

    run(scenario)
