"""The screens of select mode: the cart the guest fills with buttons before the tap that pays it."""

from __future__ import annotations

from dataclasses import dataclass, field

from terminal.money import format_cents
from terminal.screens.common import Screen, ScreenText

# What the idle board asks a guest to do in select mode
SELECT_ACTION = "Choose, then tap"


@dataclass(frozen=True)
class CartLine:
    """One product in the select-mode cart."""

    name: str
    quantity: int
    price_cents: int


@dataclass(frozen=True)
class CartScreen(Screen):
    """Select mode: what the guest chose and the total, waiting for a tap; every item is listed (a
    panel too small for them pages through them), and the prompt names the button that empties it."""

    items: tuple[CartLine, ...] = field(default_factory=tuple)
    cancel_button: str | None = None

    @property
    def total_cents(self) -> int:
        return sum(i.quantity * i.price_cents for i in self.items)

    @property
    def prompt(self) -> str:
        """The last line: how to pay and, in brackets like a key cap, the button that cancels (name it as
        it is labelled on the machine); short, so it fits a 128-pixel line."""
        return "Tap to pay" if self.cancel_button is None else f"Tap to pay · [{self.cancel_button}]"

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        lines = tuple(f"{i.quantity}x {i.name}" for i in self.items)
        return ScreenText(f"Total {format_cents(self.total_cents, locale, currency)}", (*lines, self.prompt))
