"""The screens of the top-up kiosk: locked until an operator card, then the amount to credit."""

from __future__ import annotations

from dataclasses import dataclass

from terminal.money import format_cents
from terminal.screens.common import TAP_ACTION, Screen, ScreenText


@dataclass(frozen=True)
class KioskLockedScreen(Screen):
    """Top-up kiosk waiting for an operator card."""

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        return ScreenText("Top-up", ("Locked", "Staff card to unlock"))


@dataclass(frozen=True)
class KioskScreen(Screen):
    """Top-up kiosk unlocked: the operator picks the amount, the guest taps.

    ``buttons``: (button name, cents it adds) for each amount button, shown while choosing.
    """

    amount_cents: int = 0
    buttons: tuple[tuple[str, int], ...] = ()

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        if self.amount_cents <= 0:
            adds = tuple(f"{name} +{format_cents(cents, locale, currency)}" for name, cents in self.buttons)
            return ScreenText("Top-up", ("Choose amount", *adds))
        return ScreenText("Top-up", (f"+{format_cents(self.amount_cents, locale, currency)}", TAP_ACTION))


@dataclass(frozen=True)
class PinScreen(Screen):
    """An operator card was tapped; its PIN is entered with the buttons (``entered`` of ``length``)."""

    entered: int = 0
    length: int = 4

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        return ScreenText("Top-up", ("Enter PIN", "*" * self.entered + "-" * (self.length - self.entered)))
