"""Counts the frames a display failed to show and logs each burst of failures once, not once a frame."""

from __future__ import annotations

import logging

log = logging.getLogger("taptill.display")


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
    """Whether the last frame reached the display; ``name`` says which display in log lines."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failures = 0  # frames that did not reach the display since start
        self.burst = 0  # failed frames in a row, 0 while frames arrive
        self.last_error = ""

    @property
    def trouble(self) -> str | None:
        """One line for a status display while frames keep failing, None while the display works."""
        if not self.burst:
            return None
        return f"{self.name} display failing: {self.last_error}"

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.burst += 1
        self.last_error = describe(exc)
        if self.burst == 1:
            # one line, no traceback: on long wires this can happen every few minutes
            log.warning(
                "%s display: a frame failed (%s); retrying with whole frames", self.name, self.last_error
            )

    def sent(self) -> None:
        if self.burst:
            log.warning("%s display works again after %d failed frames", self.name, self.burst)
        self.burst = 0
