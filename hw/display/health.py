"""Counts the frames a display failed to show and logs each burst of failures once, not once a frame."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("taptill.display")

QUIET_S = 60.0  # a burst ends when frames have arrived for this long without a failure


def describe(exc: BaseException) -> str:
    """One line naming the fault: the OS error underneath when a driver re-raised it as its own.

    luma turns Errno 121 during a command into "I2C device not found", which misleads on a panel that
    answered a moment ago; the OSError it was raised from names the real fault.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return f"[Errno {seen.errno}] {seen.strerror}"
        seen = seen.__cause__ or seen.__context__
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class DisplayHealth:
    """Whether frames reach a display; ``name`` says which display in log lines.

    A loose wire fails now and then for minutes: the first failure is one warning line, and the
    burst ends (one more line, with its count) only after ``quiet_s`` without a failure.
    """

    def __init__(
        self, name: str, *, clock: Callable[[], float] = time.monotonic, quiet_s: float = QUIET_S
    ) -> None:
        self.name = name
        self.failures = 0  # frames that did not reach the display since start
        self.failing = False  # the last frame did not arrive
        self.last_error = ""
        self._clock = clock
        self._quiet_s = quiet_s
        self._burst_failures = 0  # failed frames since the warning, 0 outside a burst
        self._last_failure = 0.0

    @property
    def trouble(self) -> str | None:
        """One line for a status display while frames fail, None while the last one arrived."""
        return f"{self.name} display failing: {self.last_error}" if self.failing else None

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.failing = True
        self.last_error = describe(exc)
        self._last_failure = self._clock()
        if not self._burst_failures:
            # one line, no traceback: on long wires this can happen every few minutes
            log.warning(
                "%s display: a frame failed (%s); retrying with whole frames", self.name, self.last_error
            )
        self._burst_failures += 1

    def sent(self) -> None:
        self.failing = False
        if self._burst_failures and self._clock() - self._last_failure >= self._quiet_s:
            log.warning("%s display works again; %d frames had failed", self.name, self._burst_failures)
            self._burst_failures = 0
