"""Which cards may not start a sale yet: one physical tap is one sale, however the card flickers.

A card that was charged starts a new sale only when both hold: ``retap_guard_s`` has passed since
the charge, and the card has been away from the reader for ``rearm_absent_s`` without a break. A card
at the edge of the field comes and goes every few hundred milliseconds; counting only from the sale,
each return after the guard was a new purchase (field test: 4 charges in 12 s of flicker). Time comes
in as timer events (``StartTimer`` out, ``TimerFired`` in), so this stays as pure as the controller.
"""

from __future__ import annotations

from collections.abc import Callable

from terminal.effects import Effect, StartTimer


class RetapGuard:
    """The guarded cards: by the timer token that ends their guard since the sale, and by the token of
    the re-arm timer their current absence started (None: on the reader, the absence not begun).

    ``guard_s`` 0 turns the whole guard off (re-arm included); ``rearm_s`` 0 only the re-arm rule.
    ``token`` hands out timer tokens unique across the controller.
    """

    def __init__(self, guard_s: float, rearm_s: float, token: Callable[[], int]) -> None:
        self.guard_s = guard_s
        self.rearm_s = rearm_s
        self._token = token
        self._since_sale: dict[str, int] = {}
        self._absent: dict[str, int | None] = {}

    @property
    def on(self) -> bool:
        return self.guard_s > 0

    def blocks(self, uid: str) -> bool:
        """``uid`` must not start a sale now: its guard runs, or it has not been away long enough."""
        return uid in self._since_sale or uid in self._absent

    def charged(self, uid: str, *, on_reader: bool) -> list[Effect]:
        """``uid`` was charged (or will be): guard it; the timers to start."""
        if not self.on:
            return []
        self._since_sale[uid] = guard = self._token()
        effects: list[Effect] = [StartTimer(guard, self.guard_s)]
        if self.rearm_s > 0:
            self._absent[uid] = None
            if not on_reader:
                # Taken away while the sale was decided: its absence counts from now (the safe side).
                effects += self.removed(uid)
        return effects

    def presented(self, uid: str) -> None:
        """``uid`` is in the field again: an absence under way is broken, it must start over."""
        if uid in self._absent:
            self._absent[uid] = None

    def refused(self, uid: str) -> None:
        """``uid`` came back too soon (its guard, or its result still showing) and was not a tap: it
        must be away the re-arm time again, so a card flickering past its guard never buys twice."""
        if self.on and self.rearm_s > 0:
            self._absent[uid] = None

    def removed(self, uid: str) -> list[Effect]:
        """``uid`` left the field: its absence starts; the re-arm timer to start, if it waits for one."""
        if uid not in self._absent:
            return []
        self._absent[uid] = rearm = self._token()
        return [StartTimer(rearm, self.rearm_s)]

    def timer(self, token: int) -> bool:
        """A timer fired: True if it ended a card's guard or its absence (a broken absence's timer
        matches nothing: the card came back before it fired)."""
        for table in (self._since_sale, self._absent):
            uid = next((u for u, t in table.items() if t == token), None)
            if uid is not None:
                del table[uid]
                return True
        return False
