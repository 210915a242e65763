"""ready2order's rate limit as the emulator applies it: more than ``limit`` requests in a sliding window
answer 429 with the real body, and every request is refused until a block of ``block_s`` has passed.

The real API allows 60 requests a minute per IP address and then blocks "for at least 1 minutes" with no
Retry-After (INTEGRATION-NOTES.md). Time is the emulator's clock, so a test moves past the block.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable


def rate_limit_body(limit_per_min: int, minutes: int) -> dict[str, object]:
    """The JSON the real API answers a request over its limit with."""
    return {
        "error": True,
        "msg": f"You reached the rate limit of {limit_per_min} requests per minute. You are blocked for "
        f"at least {minutes} minutes!",
        "code": "rateLimitExceeded",
        "details": {"rateLimitRequestPerMinute": limit_per_min},
    }


class RateWindow:
    """Counts requests on ``now`` (epoch seconds); thread-safe."""

    def __init__(
        self, now: Callable[[], float], limit: int = 60, window_s: float = 60.0, block_s: float = 60.0
    ) -> None:
        if limit < 1 or window_s <= 0 or block_s < 0:
            raise ValueError("a rate limit needs limit >= 1, window_s > 0 and block_s >= 0")
        self.now = now
        self.limit = limit
        self.window_s = window_s
        self.block_s = block_s
        self._lock = threading.Lock()
        self._seen: deque[float] = deque()
        self._blocked_until = 0.0
        self.refused = 0  # 429s answered

    def admit(self) -> bool:
        """Count one request; False (429) when it is over the limit or the block is still on."""
        with self._lock:
            now = self.now()
            while self._seen and self._seen[0] <= now - self.window_s:
                self._seen.popleft()
            if now < self._blocked_until:
                self.refused += 1
                return False
            if len(self._seen) >= self.limit:
                self._blocked_until = now + self.block_s
                self.refused += 1
                return False
            self._seen.append(now)
            return True

    @property
    def per_minute(self) -> int:
        """The limit as the 429 body states it (requests per minute)."""
        return round(self.limit * 60.0 / self.window_s)

    @property
    def block_minutes(self) -> int:
        return max(1, round(self.block_s / 60.0))

    def blocked_until(self) -> float:
        with self._lock:
            return self._blocked_until

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()
            self._blocked_until = 0.0
