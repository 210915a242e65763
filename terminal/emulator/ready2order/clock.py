"""The emulator's clock: the wall clock plus an offset a test moves forward (expiry, the rate limit's
block, the daily report's date), so nobody waits a real minute."""

from __future__ import annotations

import threading
import time


class EmulatorClock:
    """Epoch seconds: ``now()`` is the wall clock (or ``start``) plus everything ``advance`` added."""

    def __init__(self, start: float | None = None) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0 if start is None else start - time.time()

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward (a negative value moves it back, as a clock step would)."""
        with self._lock:
            self._offset += seconds

    def set(self, epoch_s: float) -> None:
        """Jump to ``epoch_s`` (it runs on from there)."""
        with self._lock:
            self._offset = epoch_s - time.time()
