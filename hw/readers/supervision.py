"""Keeps a card reader alive: a reader loop that fails runs again after a growing delay, reported offline.

A reader thread that dies leaves a terminal that shows prices and can never read a card, so no reader
loop is allowed to end before stop(): an exception (a driver bug, a device that vanished mid-call) is
one warning line (the traceback only at DEBUG), the reader is reported offline with the failure count,
and the loop starts again after 1 s, 2 s, 4 s … up to 30 s. A reader that then runs for a minute without
failing starts again from the first delay.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
MAX_RETRY_S = 30.0
STABLE_S = 60.0  # a reader that ran this long since its last (re)start is healthy again


class Backoff:
    """Delays (s) between restarts of a failing reader; owned by the one reader thread that uses it."""

    def __init__(
        self,
        first_s: float = FIRST_RETRY_S,
        max_s: float = MAX_RETRY_S,
        stable_s: float = STABLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.stable_s = stable_s
        self.failures = 0  # in a row, since the reader last ran stable_s without failing
        self._clock = clock
        self._started = clock()

    def started(self) -> None:
        """The reader (re)started, or its device opened: the stable period counts from now."""
        self._started = self._clock()

    def failed(self) -> float:
        """Count a failure; the seconds to wait before the next start."""
        if self._clock() - self._started >= self.stable_s:
            self.failures = 0
        self.failures += 1
        return float(min(self.max_s, self.first_s * 2 ** (self.failures - 1)))

    def describe(self, delay_s: float) -> str:
        """How a failure's log line and offline detail end: when it retries, and how many in a row."""
        return f"retrying in {delay_s:g} s (failure {self.failures} in a row)"


def run_supervised(
    name: str,
    loop: Callable[[], None],
    stopping: threading.Event,
    report_offline: Callable[[str], None],
    backoff: Backoff,
) -> None:
    """Run a reader's ``loop`` until ``stopping`` is set, again after each failure (an exception, or the
    loop ending on its own) with ``backoff``'s delay; ``report_offline`` gets the one-line reason, which
    must not raise."""
    while not stopping.is_set():
        backoff.started()
        try:
            loop()
            why = "its loop ended"
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.debug("%s reader loop failed", name, exc_info=True)
        if stopping.is_set():
            return
        delay = backoff.failed()
        detail = f"{name} reader failed ({why}); {backoff.describe(delay)}"
        log.warning("%s", detail)
        report_offline(detail)
        stopping.wait(delay)
