"""Whether the POS payments may be sent, and why not, for the delivery loop, ``status`` and ``doctor``.

The payments stop on their own (the loop's circuit breaker) while PAR Brink refuses the access or location
token (ResultCode 4, HTTP 401/403): sending more would only be refused the same way. A probe reads the
token files anew now and then and asks GetParty; the payments go on once the answer is not "access
denied". Tables are paid by wallet meanwhile; their payment records wait in the journal, in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TOKEN_FIX = (
    "put the right tokens in the files [brink] access_token_file and location_token_file name "
    "(the terminal reads them again by itself)"
)


@dataclass(frozen=True)
class Refused:
    """Why nothing is sent until a probe finds it fixed; ``since`` in epoch seconds."""

    reason: str
    since: float


class PosHealth:
    """The payments' state; ``on_change`` is called after every change (the runtime journals it)."""

    def __init__(
        self, on_change: Callable[[], None] | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.on_change = on_change
        self.clock = clock
        self.refused: Refused | None = None
        self.last_problem: str | None = None

    @property
    def running(self) -> bool:
        return self.refused is None

    def refuse(self, reason: str) -> None:
        if self.refused is None or self.refused.reason != reason:
            self.refused = Refused(reason, self.clock())
            self._changed()

    def working(self) -> None:
        """The POS answered with something other than "access denied"."""
        if self.refused is not None or self.last_problem is not None:
            self.refused = None
            self.last_problem = None
            self._changed()

    def problem(self, text: str) -> None:
        if text != self.last_problem:
            self.last_problem = text
            self._changed()

    def as_json(self) -> dict[str, Any]:
        refused = self.refused
        stopped = None if refused is None else {"reason": refused.reason, "since": refused.since}
        return {"refused": stopped, "last_problem": self.last_problem}

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()
