"""The emulators' clock: epoch seconds that follow real time, moved ahead by a test or held still."""

from __future__ import annotations

import threading
import time


class EmulatorClock:
    """Epoch seconds (``now()``) for expiries and time stamps an emulator hands out.

    Runs with the real clock plus an offset that ``advance`` grows, so a test can let ten minutes pass
    at once while everything else keeps its pace; ``frozen`` holds it still at ``start`` until advanced
    (for answers that must not depend on how long a test took). Safe to call from server threads.
    """

    def __init__(self, start: float | None = None, *, frozen: bool = False) -> None:
        self._lock = threading.Lock()
        self._frozen = frozen
        self._base = time.time() if start is None else start
        self._offset = 0.0 if frozen else self._base - time.time()

    def now(self) -> float:
        """The emulator's time in epoch seconds."""
        with self._lock:
            if self._frozen:
                return self._base + self._offset
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock ahead by ``seconds`` (never back: expiries only ever come closer)."""
        if seconds < 0:
            raise ValueError(f"an emulator clock only moves ahead, not by {seconds} s")
        with self._lock:
            self._offset += seconds
