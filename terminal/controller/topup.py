"""Top-up mode (a kiosk): locked until an operator card unlocks it; the operator picks credit products
with buttons and the guest's tap books them (negative prices credit the wallet)."""

from __future__ import annotations

import hashlib

from terminal.controller.mode import BalanceCheck, CardAnswer, Redraw, Refusal, Sale, SellMode, Till
from terminal.effects import Beep, StartTimer
from terminal.model import DeclineReason
from terminal.screens import DeclinedScreen, Screen
from terminal.screens.topup import KioskLockedScreen, KioskScreen


def operator_hash(uid: str) -> str:
    """How operator cards are configured: the SHA-256 of the normalised UID, so a leaked config
    does not reveal the UIDs."""
    return hashlib.sha256(uid.encode("ascii")).hexdigest()


class TopupMode(SellMode):
    """An operator card unlocks (and locks again); the kiosk locks by itself ``unlock_s`` after the
    operator's last card or press. A guest's tap with no amount chosen shows the balance."""

    credits = True

    def __init__(self, till: Till) -> None:
        super().__init__(till)
        self._unlock_token = 0

    def idle_screen(self) -> Screen:
        if self.operator is None:
            return KioskLockedScreen()
        return KioskScreen(self._credit_cents(), self._amount_buttons())

    def card(self, uid: str) -> CardAnswer:
        if operator_hash(uid) in self.till.settings.operators:
            if self.operator is not None:
                self._lock()
                return Redraw((Beep("approved"),))
            self.operator = operator_hash(uid)
            return Redraw((self._stay_unlocked(), Beep("approved")))
        if self.operator is None:
            return Refusal(DeclinedScreen(DeclineReason.KIOSK_LOCKED), "declined")
        if not self.cart or self._credit_cents() <= 0:
            return BalanceCheck()
        return Sale(tuple(self.cart), operator=self.operator)

    def button(self, name: str) -> Refusal | Redraw | None:
        if self.operator is None:
            return Refusal(DeclinedScreen(DeclineReason.KIOSK_LOCKED), "declined")
        if (refusal := self.unavailable(name)) is not None:
            return refusal
        if not self.pick(name):
            return None
        return Redraw((self._stay_unlocked(),))  # the operator is busy: stay unlocked

    def timer(self, token: int) -> bool:
        if token == self._unlock_token and self.operator is not None:
            self._lock()
            return True
        return False

    def _stay_unlocked(self) -> StartTimer:
        self._unlock_token = self.till.token()
        return StartTimer(self._unlock_token, self.till.settings.unlock_s)

    def _lock(self) -> None:
        self.operator = None
        self.cart.clear()

    def _credit_cents(self) -> int:
        """What the chosen credit products add to the wallet (positive)."""
        return -sum(p.price_cents for pid in self.cart if (p := self.till.product(pid)) is not None)

    def _amount_buttons(self) -> tuple[tuple[str, int], ...]:
        """(button, cents it adds) for the kiosk's amount buttons, in their configured order."""
        return tuple(
            (name, -p.price_cents)
            for name, pid in self.till.settings.buttons.items()
            if (p := self.till.product(pid)) is not None and self.sells(pid)
        )
