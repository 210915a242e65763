"""Whether the mirror may send, and why not, for the delivery loop, ``taptill status`` and ``doctor``.

The mirror stops on its own (the loop's circuit breaker) while ready2order refuses the account token
(401/403) or, with ``open_day = false``, while no daily report is open; it probes once in a while and
goes on when the answer changes. A 429 pauses it for the block, also said here. Sales keep selling
meanwhile: their invoice records wait in the journal, in order.

A pause is kept as when it began (a ``boot_clock.Moment``) and how long it lasts, never as a wall-clock
"until": NTP or fake-hwclock stepping the wall clock after a 429 would otherwise show a pause that ended
long ago (or one that never began) in ``status`` and ``doctor``. What is left of it is measured on the
boot-time clock, never more than the pause itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from terminal.service import boot_clock
from terminal.service.boot_clock import Moment


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
        self.paused: tuple[Moment, float] | None = None  # a 429's block: when it began, how long (s)
        self.last_problem: str | None = None

    @property
    def running(self) -> bool:
        return self.refused is None and self.day_closed is None

    def refuse(self, reason: str, fix: str) -> None:
        if self.refused is None or self.refused.reason != reason:
            self.refused = Stopped(reason, fix, self.clock())
            self._changed()

    def close_day(self, open_day: bool) -> Stopped:
        """No daily report is open: the mirror stops until one is; returns why and what to do."""
        if self.day_closed is None:
            fix = (
                "the terminal could not open it; open the day in ready2order"
                if open_day
                else "open the day in ready2order (or set open_day = true in [ready2order])"
            )
            self.day_closed = Stopped("no daily report is open", fix, self.clock())
            self._changed()
        return self.day_closed

    def rate_limited(self, wait_s: float) -> None:
        self.paused = (boot_clock.now(self.clock()), wait_s)
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
            "paused": None
            if self.paused is None
            else {
                "wall": self.paused[0].wall,
                "boot": self.paused[0].boot,
                "uptime": self.paused[0].uptime,
                "for_s": self.paused[1],
            },
            "last_problem": self.last_problem,
        }

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


def pause_left_s(state: Mapping[str, Any], at: Moment | None = None) -> float:
    """Seconds left of the pause a running mirror's ``as_json`` state records (0.0: none), as of ``at``
    (default now): its length less its age on the boot-time clock (the wall clock only across boots, never
    negative), so a stepped wall clock neither ends nor extends it on screen."""
    paused = state.get("paused")
    if not isinstance(paused, dict):
        return 0.0
    wall, boot, uptime, for_s = (paused.get(k) for k in ("wall", "boot", "uptime", "for_s"))
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (wall, uptime, for_s)):
        return 0.0
    assert (
        isinstance(wall, int | float) and isinstance(uptime, int | float) and isinstance(for_s, int | float)
    )
    began = Moment(float(wall), boot if isinstance(boot, str) else "", float(uptime))
    age = boot_clock.age_s(began, at if at is not None else boot_clock.now())
    return min(float(for_s), max(0.0, float(for_s) - age))
