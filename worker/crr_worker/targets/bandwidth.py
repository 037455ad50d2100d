"""A site's `bandwidthLimit`: a token bucket shared by every copy to that site in one process.

Body bytes are counted where they are read from the source (the spool's chunks), so every copy of the site,
single PUTs and multipart parts alike, draws from the same bucket. A take larger than what is in the bucket
leaves it in debt and waits until the debt is paid back: a chunk may be larger than the burst, and the rate
over any stretch of time stays at most the limit (plus one burst).
"""

from __future__ import annotations

import threading
import time

from crr_worker.retry import Stopped

WAIT_SLICE_S = 0.1  # a throttled copy checks its stop signal this often


class TokenBucket:
    """`rate` bytes per second, at most `burst` bytes ahead (the bucket starts full)."""

    def __init__(self, rate: int, burst: int | None = None, clock=time.monotonic, sleep=time.sleep):
        if rate <= 0:
            raise ValueError("rate must be > 0 bytes/s")
        self.rate = rate
        self.burst = burst if burst is not None else rate  # one second's worth
        self.clock, self.sleep = clock, sleep
        self.tokens = float(self.burst)
        self.refilled = clock()
        self.lock = threading.Lock()

    def take(self, count: int, stop=None) -> None:
        """Wait until `count` bytes may go; Stopped when `stop` is set meanwhile (what was taken stays taken)."""
        wait_s = self._reserve(count)
        deadline = self.clock() + wait_s
        while (left := deadline - self.clock()) > 0:
            if stop is not None and stop.is_set():
                raise Stopped()
            self.sleep(min(left, WAIT_SLICE_S))

    def _reserve(self, count: int) -> float:
        """Take `count` tokens now, in debt if need be; returns how long the debt takes to pay back."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.rate)
            self.refilled = now
            self.tokens -= count
            return max(0.0, -self.tokens / self.rate)


class Unlimited:
    """No bandwidthLimit: every take goes at once."""

    burst = None

    def take(self, count: int, stop=None) -> None:
        return None


def site_bandwidth(limit: int | None) -> TokenBucket | Unlimited:
    """The throttle of a site whose `bandwidthLimit` is `limit` (None: unlimited). One per target object: the
    processor of a site holds one target, shared by all its copies."""
    return Unlimited() if limit is None else TokenBucket(limit)
