"""A token bucket for an upload limit, pure: the caller gives the clock and does the waiting.

An agent that backs up a node sends every pack to R storage peers; on an office LAN
shared with people at work, `limit_upload` keeps those transfers under a rate, as
restic's and kopia's upload limits do. The bucket hands out reservations: a transfer
of n bytes takes n tokens at once, even beyond what is there, and is told how long to
wait before it starts. Transfers larger than the burst (a 16 MiB pack against a
small limit) are so still paced right on average, and concurrent transfers queue
behind each other's debt instead of starving.
"""

from __future__ import annotations

from peerbackup.errors import UsageError


class TokenBucket:
    def __init__(self, rate: float, now: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise UsageError(f"an upload limit must be positive (got {rate:g} bytes/s)")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)  # one second's worth by default
        self.tokens = self.burst
        self.at = now

    def reserve(self, n: int, now: float) -> float:
        """Take n bytes' worth; the seconds to wait before sending them (0: at once)."""
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
        self.tokens -= n
        return max(0.0, -self.tokens / self.rate)
