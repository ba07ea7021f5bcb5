"""What a holder drops on a node log's word (core/forgotten.py): only what a dispatched retention job forgot."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from peerbackup.core.events import Event
from peerbackup.core.forgotten import PREFIX, forgotten, is_forgotten
from peerbackup.core.nodelog import JOB_DISPATCHED, JOB_DONE

PEERS = ["C" * 8, "D" * 8, "A" * 8, "B" * 8]  # C, D may coordinate; A, B are agents (any may write anything here)
CLAIMS = [(3, "C" * 8)]  # only C claimed a term: term 3
IDS = ["0123456789abcdef" * 4, "fedcba9876543210" * 4, "00" * 32]


def ev(kind: str, feed: str, **fields: Any) -> Event:
    return Event(log="node:accounts", feed=feed, seq=1, prev=b"", hlc=0, kind=kind, fields=fields, body=b"",
                 sig=b"", raw=b"", id=b"")


entries = st.one_of(st.sampled_from(IDS).map(lambda i: i[:PREFIX]), st.sampled_from(IDS),
                    st.text("0123456789abcdefX", max_size=20), st.sampled_from(["", "0", IDS[0][:15]]))
dispatch = st.builds(lambda feed, coord, term, job, agent, kind: ev(JOB_DISPATCHED, feed, job=job, agent=agent,
                                                                     coordinator=coord, term=term, job_kind=kind),
                     st.sampled_from(PEERS), st.sampled_from(PEERS), st.sampled_from([2, 3]),
                     st.sampled_from(["j1", "j2"]), st.sampled_from(PEERS), st.sampled_from(["retention", "backup"]))
done = st.builds(lambda feed, job, kind, forgot: ev(JOB_DONE, feed, job=job, job_kind=kind, forgotten=forgot),
                 st.sampled_from(PEERS), st.sampled_from(["j1", "j2"]), st.sampled_from(["retention", "backup"]),
                 st.lists(entries, max_size=4))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(dispatch, done), max_size=12))
def test_only_a_dispatched_retention_jobs_agent_makes_a_snapshot_forgotten(events: list[Event]) -> None:
    got = forgotten(events, CLAIMS)
    # The model: a job.done of a retention job, by the agent that C (the only claimant, in its term 3)
    # dispatched that retention job to; its entries of 16 to 64 hex digits, cut to 16.
    allowed = {(e.fields["job"], e.fields["agent"]) for e in events if e.kind == JOB_DISPATCHED
               and e.feed == "C" * 8 and e.fields["coordinator"] == "C" * 8 and e.fields["term"] == 3
               and e.fields["job_kind"] == "retention"}
    want = {x[:PREFIX] for e in events if e.kind == JOB_DONE and e.fields["job_kind"] == "retention"
            and (e.fields["job"], e.feed) in allowed
            for x in e.fields["forgotten"] if 16 <= len(x) <= 64 and all(c in "0123456789abcdef" for c in x)}
    assert got == want
    # A prefix names only the snapshots whose ids begin with it, never a shorter or different one.
    for name in IDS:
        assert is_forgotten(name, got) == (name[:PREFIX] in want)
    assert not is_forgotten(IDS[0][:10], {IDS[0][:10]})


def test_a_forged_record_names_nothing() -> None:
    forged = [ev(JOB_DISPATCHED, "D" * 8, job="j1", agent="A" * 8, coordinator="D" * 8, term=3,
                 job_kind="retention"),  # D never claimed term 3
              ev(JOB_DISPATCHED, "A" * 8, job="j2", agent="A" * 8, coordinator="C" * 8, term=3,
                 job_kind="retention"),  # written by A, naming C
              ev(JOB_DONE, "A" * 8, job="j1", job_kind="retention", forgotten=[IDS[0]]),
              ev(JOB_DONE, "A" * 8, job="j2", job_kind="retention", forgotten=[IDS[1]]),
              ev(JOB_DONE, "A" * 8, job="j3", job_kind="retention", forgotten=[IDS[2]])]  # never dispatched
    assert forgotten(forged, CLAIMS) == set()
    real = ev(JOB_DISPATCHED, "C" * 8, job="j1", agent="B" * 8, coordinator="C" * 8, term=3, job_kind="retention")
    assert forgotten([*forged, real], CLAIMS) == set()  # dispatched to B, claimed done by A
    assert forgotten([*forged, real, ev(JOB_DONE, "B" * 8, job="j1", job_kind="retention", forgotten=[IDS[0]])],
                     CLAIMS) == {IDS[0][:PREFIX]}
