"""The screen model: what the guest sees, as small typed values that every display renders."""

from __future__ import annotations

from dataclasses import dataclass, field

from terminal.model import DeclineReason
from terminal.money import format_cents

DECLINE_TEXT: dict[DeclineReason, str] = {
    DeclineReason.UNKNOWN_CARD: "Card not registered",
    DeclineReason.INSUFFICIENT_BALANCE: "Insufficient balance",
    DeclineReason.PERMISSION: "Not allowed here",
    DeclineReason.SERVER_TROUBLE: "Server trouble, try again",
    DeclineReason.OFFLINE: "Offline: no sales",
    DeclineReason.OFFLINE_LIMIT: "Offline limit reached",
    DeclineReason.DENIED_CARD: "Card blocked",
    DeclineReason.BAD_PRODUCT: "Product unavailable",
    DeclineReason.STORAGE: "Out of service (storage)",
    DeclineReason.NOTHING_SELECTED: "Choose a product first",
    DeclineReason.KIOSK_LOCKED: "Locked: operator first",
    DeclineReason.OUT_OF_SERVICE: "Out of service",
}


@dataclass(frozen=True)
class ScreenText:
    """A screen laid out as a title and a few body lines (console, and the OLED's text)."""

    title: str
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class PriceLine:
    """One product on the price board."""

    name: str
    price_cents: int
    stale: bool = False


@dataclass(frozen=True)
class Screen:
    """Base of every screen; subclasses say what they show."""

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        raise NotImplementedError


@dataclass(frozen=True)
class IdleScreen(Screen):
    """The price board shown while waiting for a card."""

    prices: tuple[PriceLine, ...] = ()
    title: str = "Tap your card"
    stale: bool = False

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        lines = tuple(
            f"{p.name} {format_cents(p.price_cents, locale, currency)}{'*' if p.stale else ''}"
            for p in self.prices
        )
        if self.stale:
            lines += ("* prices may be old",)
        return ScreenText(self.title, lines)


@dataclass(frozen=True)
class OfflineScreen(Screen):
    """Idle while the wallet server is unreachable; shows the unconfirmed sales."""

    unconfirmed: int = 0
    accepting: bool = True
    prices: tuple[PriceLine, ...] = ()

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        first = "Tap your card" if self.accepting else "No sales right now"
        return ScreenText("OFFLINE", (first, f"{self.unconfirmed} unconfirmed"))


@dataclass(frozen=True)
class ProcessingScreen(Screen):
    """A card was read; the terminal is deciding."""

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        return ScreenText("Processing", ("Keep card on reader",))


@dataclass(frozen=True)
class ApprovedScreen(Screen):
    """A sale went through (or was accepted offline, ``confirmed`` False)."""

    amount_cents: int
    balance_cents: int | None = None
    confirmed: bool = True

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        lines = [format_cents(self.amount_cents, locale, currency)]
        if self.balance_cents is not None:
            lines.append(f"Balance {format_cents(self.balance_cents, locale, currency)}")
        if not self.confirmed:
            lines.append("(offline, booked later)")
        return ScreenText("Approved", tuple(lines))


@dataclass(frozen=True)
class DeclinedScreen(Screen):
    """A tap that did not become a sale, and why."""

    reason: DeclineReason
    balance_cents: int | None = None

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        lines = [DECLINE_TEXT[self.reason]]
        if self.balance_cents is not None:
            lines.append(f"Balance {format_cents(self.balance_cents, locale, currency)}")
        return ScreenText("Declined", tuple(lines))


@dataclass(frozen=True)
class NotRegisteredScreen(Screen):
    """An unknown card; offers the pairing URL (a QR code on the OLED) when configured."""

    uid: str
    pairing_url: str | None = None

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        lines = ["Card not registered"]
        if self.pairing_url:
            lines.append(f"Pair: {self.pairing_url}")
        return ScreenText("Unknown card", tuple(lines))


@dataclass(frozen=True)
class ReaderOfflineScreen(Screen):
    """The card reader is gone (unplugged, pcscd restarted); recovery is automatic."""

    detail: str = ""

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        return ScreenText("Reader offline", (self.detail,) if self.detail else ())


@dataclass(frozen=True)
class OutOfServiceScreen(Screen):
    """The terminal cannot sell (full disk, read-only journal, misconfiguration)."""

    message: str

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        return ScreenText("Out of service", (self.message,))


@dataclass(frozen=True)
class CartLine:
    """One product in the select-mode cart."""

    name: str
    quantity: int
    price_cents: int


@dataclass(frozen=True)
class CartScreen(Screen):
    """Select mode: what the guest chose and the total, waiting for a tap."""

    items: tuple[CartLine, ...] = field(default_factory=tuple)

    @property
    def total_cents(self) -> int:
        return sum(i.quantity * i.price_cents for i in self.items)

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        lines = tuple(f"{i.quantity}x {i.name}" for i in self.items)
        return ScreenText(f"Total {format_cents(self.total_cents, locale, currency)}", (*lines, "Tap to pay"))


@dataclass(frozen=True)
class BalanceScreen(Screen):
    """A tap with an empty cart shows the balance without charging."""

    balance_cents: int

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        return ScreenText("Balance", (format_cents(self.balance_cents, locale, currency),))


@dataclass(frozen=True)
class KioskLockedScreen(Screen):
    """Top-up kiosk waiting for an operator card."""

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        return ScreenText("Top-up", ("Locked", "Operator card please"))


@dataclass(frozen=True)
class KioskScreen(Screen):
    """Top-up kiosk unlocked: the operator picks the amount, the guest taps."""

    amount_cents: int = 0

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        if self.amount_cents <= 0:
            return ScreenText("Top-up", ("Choose amount",))
        return ScreenText(
            "Top-up", (f"+{format_cents(self.amount_cents, locale, currency)}", "Guest: tap card")
        )


@dataclass(frozen=True)
class CreditScreen(Screen):
    """A top-up went through: the credit and the new balance."""

    amount_cents: int
    balance_cents: int | None = None

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        lines = [f"+{format_cents(self.amount_cents, locale, currency)}"]
        if self.balance_cents is not None:
            lines.append(f"Balance {format_cents(self.balance_cents, locale, currency)}")
        return ScreenText("Credited", tuple(lines))
