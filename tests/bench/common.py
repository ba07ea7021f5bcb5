"""What every part of the benchmark shares: the checkout's root, the tools' passphrase, the size units and
the exception that abandons one tool's (or system's) run."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "peerbackup-bench-password"
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


class StepFailed(Exception):
    """A command exited with an error or a check failed: that tool's or system's run is abandoned."""
