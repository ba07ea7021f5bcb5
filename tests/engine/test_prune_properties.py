"""Trying to break prune's invariant: it never deletes a pack that a snapshot still in the repository needs.

A Hypothesis state machine (tests/engine/_prune_machine.py) interleaves backups, forgets and prunes,
some held in flight and finished later, from clocks ahead of or behind each other, and checks after
every step that each snapshot restores in full and check finds no error; then the races it found,
replayed step by step. Prunes killed with SIGKILL: test_prune_kills.py. Documented in
docs/repository.md, "Destructive paths and what guards them".
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.engine._prune_machine import BLOCKS, PruneMachine


def test_prune_never_deletes_what_a_snapshot_needs() -> None:
    # No shrinking: shrinking a run of threads and real repositories takes minutes; a failure prints
    # its whole run of steps instead.
    run_state_machine_as_test(PruneMachine, settings=settings(
        derandomize=True, max_examples=80, stateful_step_count=50, deadline=None, database=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    ))


def _race(start_flight_during_mark: bool, skew: float) -> None:
    m = PruneMachine()
    try:
        m.change_file("a.bin", [0, 1, 2], 0)
        m.backup(None)
        m.forget([0])
        if start_flight_during_mark:
            m.prune_while_a_backup_starts()  # the backup loads the index before the mark is stored
        else:
            m.backup("after_index")
            m.prune(skew, None)
        m.finish_backup_in_flight(0)  # it deduplicated against the packs the mark condemned
        m.prune(0.0, None)
        m.every_snapshot_restores_in_full_and_check_is_clean()
    finally:
        m.teardown()


def test_a_backup_starting_while_the_mark_is_stored_keeps_its_data() -> None:
    # Failed before CLOCK_MARGIN: the backup's lock started after the mark's time, so the sweep of
    # the same run deleted the packs the backup went on to reference.
    _race(start_flight_during_mark=True, skew=0.0)


def test_a_pruning_host_whose_clock_is_behind_waits_for_running_backups() -> None:
    # Failed before CLOCK_MARGIN: with the pruning host 90 s behind, a backup running during the mark
    # looked as if it had started after it.
    _race(start_flight_during_mark=False, skew=-90.0)


def test_a_backup_starting_mid_sweep_does_not_bring_back_the_packs_being_deleted() -> None:
    # Failed before recover_unindexed_packs skipped condemned packs: a backup that started while the sweep
    # was deleting packs (the new index written, the old one gone) indexed the packs still there as lost
    # ones; once the sweep ended, that index listed deleted packs no mark condemned any more, and the next
    # backup of the same content deduplicated against them.
    m = PruneMachine()
    try:
        m.change_file("a.bin", [BLOCKS, BLOCKS + 1], 0)
        first = m.files["a.bin"]
        m.backup(None)
        m.change_file("a.bin", [BLOCKS + 2], 0)
        m.backup(None)
        m.forget([0])
        m.prune(0.0, "mid_sweep")
        m.backup(None)
        m.finish_prune_in_flight()
        (m.src / "a.bin").write_bytes(first)  # the forgotten content comes back
        m.files["a.bin"] = first
        m.backup(None)
        m.every_snapshot_restores_in_full_and_check_is_clean()
    finally:
        m.teardown()
