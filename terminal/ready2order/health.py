"""Whether the mirror may send, and why not, for the delivery loop, ``taptill status`` and ``doctor``.

The mirror stops on its own (the loop's circuit breaker) while ready2order refuses the account token
(401/403) or, with ``open_day = false``, while no daily report is open; it probes once in a while and
goes on when the answer changes. A 429 pauses it for the block, also said here. Sales keep selling
meanwhile: their invoice records wait in the journal, in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stopped:
    """Why the mirror sends nothing until a probe finds it fixed; ``fix`` says what a person does."""

    reason: str
    fix: str
    since: float  # epoch seconds


class MirrorHealth:
    """The mirror's state; ``on_change`` is called after every change (the runtime journals it)."""

    def __init__(
        self, on_change: Callable[[], None] | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.on_change = on_change
        self.clock = clock
        self.refused: Stopped | None = None  # 401/403
        self.day_closed: Stopped | None = None
        self.paused_until: float | None = None  # epoch seconds: a 429's block
        self.last_problem: str | None = None

    @property
    def running(self) -> bool:
        return self.refused is None and self.day_closed is None

    def refuse(self, reason: str, fix: str) -> None:
        if self.refused is None or self.refused.reason != reason:
            self.refused = Stopped(reason, fix, self.clock())
            self._changed()

    def close_day(self, open_day: bool) -> None:
        if self.day_closed is None:
            fix = (
                "the terminal could not open it; open the day in ready2order"
                if open_day
                else "open the day in ready2order (or set open_day = true in [ready2order])"
            )
            self.day_closed = Stopped("no daily report is open", fix, self.clock())
            self._changed()

    def rate_limited(self, wait_s: float) -> None:
        self.paused_until = self.clock() + wait_s
        self._changed()

    def working(self) -> None:
        """A request went through: nothing stops the mirror."""
        if self.refused is not None or self.day_closed is not None or self.last_problem is not None:
            self.refused = self.day_closed = None
            self.last_problem = None
            self._changed()

    def token_works(self) -> None:
        if self.refused is not None:
            self.refused = None
            self._changed()

    def day_open(self) -> None:
        if self.day_closed is not None:
            self.day_closed = None
            self._changed()

    def problem(self, text: str) -> None:
        if text != self.last_problem:
            self.last_problem = text
            self._changed()

    def as_json(self) -> dict[str, Any]:
        def stopped(s: Stopped | None) -> dict[str, Any] | None:
            return None if s is None else {"reason": s.reason, "fix": s.fix, "since": s.since}

        return {
            "refused": stopped(self.refused),
            "day_closed": stopped(self.day_closed),
            "paused_until": self.paused_until,
            "last_problem": self.last_problem,
        }

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()
