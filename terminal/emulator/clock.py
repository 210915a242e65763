"""The emulators' clock: epoch seconds that follow real time, moved or set by a test or a control endpoint."""

from __future__ import annotations

import threading
import time


class EmulatorClock:
    """Epoch seconds (``now()``) for expiries, blocks and time stamps an emulator hands out.

    Runs with the real clock plus an offset, so a test lets ten minutes pass at once (``advance``) or
    puts the emulator on a given day (``set``) while everything else keeps its pace, and nobody waits a
    real minute. Safe to call from server threads.
    """

    def __init__(self, start: float | None = None) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0 if start is None else start - time.time()

    def now(self) -> float:
        """The emulator's time in epoch seconds."""
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on (a negative value moves it back, as a clock step would)."""
        with self._lock:
            self._offset += seconds

    def set(self, epoch_s: float) -> None:
        """Jump to ``epoch_s`` (epoch seconds); it runs on from there."""
        with self._lock:
            self._offset = epoch_s - time.time()
