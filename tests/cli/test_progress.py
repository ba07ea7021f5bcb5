"""The progress line: what it shows, and that it stays quiet off a terminal."""

from __future__ import annotations

import io

from peerbackup.cli.progress import Progress, human_bytes, human_duration


def test_line_shows_counts_rate_and_eta() -> None:
    p = Progress(enabled=True, stream=io.StringIO())
    p.planned(10, 100 * 1024 * 1024)
    for _ in range(4):
        p.file_done("/x", 1)
    p.processed(25 * 1024 * 1024)
    line = p.line()
    assert "4/10 files" in line
    assert "25.0 MiB/100.0 MiB (25%)" in line
    assert "ETA" in line and "/s" in line
    assert len(line) < 80


def test_errors_are_counted_and_printed_on_their_own_line() -> None:
    out = io.StringIO()
    p = Progress(enabled=True, stream=out)
    p.error("/data/x", "cannot open: Permission denied")
    assert "1 errors" in p.line()
    assert "error: /data/x: cannot open: Permission denied\n" in out.getvalue()


def test_disabled_progress_writes_nothing() -> None:
    out = io.StringIO()
    p = Progress(enabled=False, stream=out)
    p.start()
    p.processed(10)
    p.error("/x", "boom")
    p.stop()
    assert out.getvalue() == ""


def test_not_a_terminal_means_quiet() -> None:
    # Under pytest stderr is captured, not a terminal.
    assert not Progress.for_terminal(quiet=False).enabled


def test_human_units() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 1024**3) == "3.0 GiB"
    assert human_duration(59) == "0:59"
    assert human_duration(3725) == "1:02:05"
