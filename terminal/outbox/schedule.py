"""When each outbox record may be tried again: backoff with jitter, kept on the monotonic clock.

A Raspberry Pi has no real-time clock: fake-hwclock and NTP step its wall clock by hours or days. Every
wait here lives in memory on the monotonic clock; the wall-clock time a store notes beside a record is for
people (``taptill queue``), never read back as a schedule. After a restart every record is due at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 60.0
MAX_DOUBLINGS = 10  # 0.5 s * 2**10 is past any maximum: more doublings only risk overflow


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits between half and all of min(max_s, base_s * 2**n)
    seconds, so terminals that lost the network together do not retry together."""

    base_s: float = BACKOFF_BASE_S
    max_s: float = BACKOFF_MAX_S

    def delay_s(self, attempts: int, rng: random.Random, at_least_s: float | None = None) -> float:
        """Seconds to wait after ``attempts`` earlier attempts; never less than ``at_least_s`` (a server's
        Retry-After)."""
        delay = min(self.max_s, self.base_s * float(2 ** min(max(attempts, 0), MAX_DOUBLINGS)))
        delay *= rng.uniform(0.5, 1.0)
        return delay if at_least_s is None else max(delay, at_least_s)


class Schedule:
    """Monotonic not-before times per record id (seconds), with backoff for failed attempts."""

    def __init__(
        self,
        backoff: Backoff | None = None,
        *,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()
        self.monotonic = monotonic
        self._not_before: dict[int, float] = {}

    def due(self, record_id: int) -> bool:
        return self._not_before.get(record_id, 0.0) <= self.monotonic()

    def wait(self, record_ids: Iterable[int], seconds: float) -> None:
        """Leave these records alone for ``seconds``."""
        at = self.monotonic() + seconds
        for rid in record_ids:
            self._not_before[rid] = at

    def retry_delay_s(self, attempts: int, at_least_s: float | None = None) -> float:
        return self.backoff.delay_s(attempts, self.rng, at_least_s)

    def forget(self, record_ids: Iterable[int]) -> None:
        for rid in record_ids:
            self._not_before.pop(rid, None)

    def next_in_s(self) -> float | None:
        """Seconds until the earliest record waiting becomes due (None: none waits)."""
        now = self.monotonic()
        later = [at - now for at in self._not_before.values() if at > now]
        return min(later) if later else None
