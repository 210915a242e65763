"""A token bucket: at most ``capacity`` requests at once, refilled at ``per_s`` requests a second.

ready2order allows 60 requests a minute per IP address and blocks for a minute after that: a destination
with such a limit waits here before each request, so the limit is never reached by this terminal alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Requests allowed now and later; the clock is injectable (monotonic seconds)."""

    def __init__(
        self, capacity: float, per_s: float, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if capacity < 1 or per_s <= 0:
            raise ValueError("a token bucket needs capacity >= 1 and a refill rate > 0 per second")
        self.capacity = capacity
        self.per_s = per_s
        self.monotonic = monotonic
        self._tokens = capacity
        self._at = monotonic()
        self._blocked_until = 0.0

    def _refill(self) -> float:
        now = self.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.per_s)
        self._at = now
        return now

    def wait_s(self) -> float:
        """Seconds until one request may go (0: now)."""
        now = self._refill()
        # The later of: the server's block ending, the bucket holding a whole request again.
        return max(0.0, self._blocked_until - now, (1 - self._tokens) / self.per_s)

    def take(self) -> bool:
        """Spend one request if one may go now; False (nothing spent) otherwise."""
        if self.wait_s() > 0:
            return False
        self._tokens -= 1
        return True

    def block(self, seconds: float) -> None:
        """The server said to wait (429): no request for ``seconds``, and start again from an empty bucket."""
        now = self._refill()
        self._blocked_until = max(self._blocked_until, now + seconds)
        self._tokens = 0.0
