"""A one-line progress display on a terminal; silent otherwise."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """Counts files and bytes from worker threads and redraws a status line."""

    def __init__(self, enabled: bool, stream: TextIO = sys.stderr, interval: float = 0.25) -> None:
        self.enabled = enabled
        self.stream = stream
        self.interval = interval
        self.files = 0
        self.bytes = 0
        self.total_files = 0
        self.total_bytes = 0
        self.errors = 0
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_terminal(cls, quiet: bool) -> Progress:
        return cls(enabled=not quiet and sys.stderr.isatty() and os.environ.get("TERM") != "dumb")

    def start(self) -> None:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="progress")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.stream.write("\r\x1b[K" + self.line())
            self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-6)
        rate = self.bytes / elapsed
        parts = [human_duration(elapsed)]
        if self.total_files:
            parts.append(f"{self.files}/{self.total_files} files")
        else:
            parts.append(f"{self.files} files")
        if self.total_bytes:
            pct = min(100.0, 100.0 * self.bytes / self.total_bytes)
            parts.append(f"{human_bytes(self.bytes)}/{human_bytes(self.total_bytes)} ({pct:.0f}%)")
            if rate > 0 and self.bytes < self.total_bytes:
                parts.append(f"ETA {human_duration((self.total_bytes - self.bytes) / rate)}")
        else:
            parts.append(human_bytes(self.bytes))
        parts.append(f"{human_bytes(rate)}/s")
        if self.errors:
            parts.append(f"{self.errors} errors")
        return "  ".join(parts)[: 79]

    # BackupProgress
    def scanned(self, path: str, size: int) -> None:
        pass

    def processed(self, nbytes: int) -> None:
        with self._lock:
            self.bytes += nbytes

    def file_done(self, path: str, size: int) -> None:
        with self._lock:
            self.files += 1

    def error(self, path: str, message: str) -> None:
        with self._lock:
            self.errors += 1
        if self.enabled:
            self.stream.write(f"\r\x1b[Kerror: {path}: {message}\n")

    # RestoreProgress
    def planned(self, files: int, nbytes: int) -> None:
        self.total_files, self.total_bytes = files, nbytes

    def written(self, nbytes: int) -> None:
        with self._lock:
            self.bytes += nbytes
