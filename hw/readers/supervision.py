"""Keeps a card reader alive: a reader loop that fails runs again after a growing delay, reported offline.

A reader thread that dies leaves a terminal that shows prices and can never read a card, so no reader
loop is allowed to end before stop(): an exception (a driver bug, a device that vanished mid-call) is
one warning line (the traceback only at DEBUG), the reader is reported offline, and the loop starts
again after 1 s, 2 s, 4 s … up to 30 s. A device that cannot be opened at all (nfcpy's, pcscd) goes
through the same Backoff: one warning line and one offline report per failed attempt, so the journal
gets at most two lines a minute and `taptill status` counts every attempt. A reader that then runs for a
minute without failing starts again from the first delay.
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
        self._started: float | None = None  # when the reader last (re)started; None after a failure

    def started(self) -> None:
        """The reader (re)started, or its device opened: the stable period counts from now."""
        self._started = self._clock()

    def failed(self) -> float:
        """Count a failure; the seconds to wait before the next start.

        Only a reader that ran stable_s since started() starts from the first delay again: attempts
        to open a missing device keep counting however long they go on."""
        started, self._started = self._started, None
        if started is not None and self._clock() - started >= self.stable_s:
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
    advice: str = "check the reader's cable and driver",
) -> None:
    """Run a reader's ``loop`` until ``stopping`` is set, again after each failure (an exception, or the
    loop ending on its own) with ``backoff``'s delay. Each failure is one warning line (with the retry
    delay and count) and one call of ``report_offline`` with what failed and ``advice`` (for `taptill
    status` and `doctor`, which count the failures themselves); it must not raise."""
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
        detail = f"{name} reader failed ({why}); {advice}"
        delay = failed(backoff, detail)
        report_offline(detail)
        stopping.wait(delay)


def failed(backoff: Backoff, detail: str) -> float:
    """Count a reader's failure and log its one warning line (``detail``, then when it retries and how
    many failures in a row); the seconds to wait before the next attempt."""
    delay = backoff.failed()
    log.warning("%s; %s", detail, backoff.describe(delay))
    return delay
