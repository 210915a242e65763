"""The screens every way to sell shows: the price board, processing, the result of a tap, out of service."""

from __future__ import annotations

from dataclasses import dataclass

from terminal.model import DeclineReason
from terminal.money import format_cents

DECLINE_TEXT: dict[DeclineReason, str] = {
    DeclineReason.UNKNOWN_CARD: "Card not registered",
    DeclineReason.INSUFFICIENT_BALANCE: "Insufficient balance",
    DeclineReason.PERMISSION: "Not allowed here",
    DeclineReason.SERVER_TROUBLE: "Please try again",
    # offline: the card was not seen online lately (or the terminal takes no cards offline); one
    # 128x32 row, as a balance may need the other
    DeclineReason.OFFLINE: "Can't check card offline",
    DeclineReason.OFFLINE_LIMIT: "Offline limit reached",
    DeclineReason.DENIED_CARD: "Card blocked",
    DeclineReason.BAD_PRODUCT: "Product unavailable",
    DeclineReason.STORAGE: "Out of service, ask staff",
    DeclineReason.NOTHING_SELECTED: "Choose a product first",
    DeclineReason.KIOSK_LOCKED: "Locked: ask staff",
    DeclineReason.WRONG_PIN: "Wrong PIN",
    DeclineReason.PIN_LOCKED_OUT: "Too many PINs: wait",
    DeclineReason.CREDIT_LIMIT: "Top-up limit reached",
    DeclineReason.OUT_OF_SERVICE: "Out of service",
    DeclineReason.SOLD_OUT: "Sold out",
    # the card's earlier sale is still being confirmed (staff read why in the log and taptill tap)
    DeclineReason.EARLIER_PENDING: "Try again in a moment",
}

# What the idle screen asks a guest to do where a tap pays (each mode has its own; see select.py)
TAP_ACTION = "Tap your card"
# A product the stock ledger has less than one serving of (yourbarmate): shown instead of its price
SOLD_OUT_TEXT = "sold out"
# After the price of a product that runs low, and the footnote that explains it (for staff)
LOW_MARK = "!"
LOW_NOTE = "! low stock"
# Out of service for a reason staff must fix (storage, a fault): the details go to the log, not the guest
ASK_STAFF = "Please ask staff"


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
    product: str = ""  # the wallet product id it sells, for the stock marks ("" when not known)
    sold_out: bool = False  # less than one serving in stock: shown instead of the price
    low: bool = False  # fewer than [yourbarmate] low_servings left: a mark for staff

    def price_text(self, locale: str, currency: str, stale: bool = False) -> str:
        """What the board shows right of the name: the price with its marks, or that it is sold out."""
        if self.sold_out:
            return SOLD_OUT_TEXT
        marks = ("*" if self.stale or stale else "") + (LOW_MARK if self.low else "")
        return format_cents(self.price_cents, locale, currency) + marks


def price_notes(prices: tuple[PriceLine, ...], stale: bool) -> tuple[str, ...]:
    """The footnotes a board's marks need: old prices, low stock."""
    notes: tuple[str, ...] = ("* prices may be old",) if stale and prices else ()
    if any(p.low and not p.sold_out for p in prices):
        notes += (LOW_NOTE,)
    return notes


@dataclass(frozen=True)
class Screen:
    """Base of every screen; subclasses say what they show."""

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        raise NotImplementedError


@dataclass(frozen=True)
class IdleScreen(Screen):
    """The price board shown while waiting for a card; the title says what to do."""

    prices: tuple[PriceLine, ...] = ()
    title: str = TAP_ACTION
    stale: bool = False

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        lines = tuple(f"{p.name} {p.price_text(locale, currency)}" for p in self.prices)
        if self.stale:
            lines += ("* prices may be old",)
        if any(p.low and not p.sold_out for p in self.prices):
            lines += (LOW_NOTE,)
        return ScreenText(self.title, lines)


@dataclass(frozen=True)
class OfflineScreen(Screen):
    """Idle while the wallet server is unreachable; what to do, or that cards cannot be used now.

    ``unconfirmed`` (sales the server has not booked yet) is for staff tools, not shown to guests.
    """

    unconfirmed: int = 0
    accepting: bool = True
    prices: tuple[PriceLine, ...] = ()
    action: str = TAP_ACTION

    @property
    def first_line(self) -> str:
        return self.action if self.accepting else "Cards can't be used now"

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        return ScreenText("OFFLINE", (self.first_line,))


@dataclass(frozen=True)
class ProcessingScreen(Screen):
    """A card was read; the terminal is deciding."""

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        return ScreenText("Processing", ("Keep card on reader",))


def pending_text(offline: bool) -> str:
    """The approved screen's line for a sale not booked yet: offline, the balance the server holds
    changes when the server is back; queued while it is up, it is booked within seconds."""
    return "Balance updates later" if offline else "Booked shortly"


@dataclass(frozen=True)
class ApprovedScreen(Screen):
    """A sale went through; ``confirmed`` False: not booked yet, either ``offline`` (the offline policy
    accepted it) or queued while the server is up (behind this card's earlier sale, or its answer is
    still on the way). Both say the balance updates later: true for either, and short enough for 128x32."""

    amount_cents: int
    balance_cents: int | None = None
    confirmed: bool = True
    offline: bool = False

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        lines = [format_cents(self.amount_cents, locale, currency)]
        if self.balance_cents is not None:
            lines.append(f"Balance {format_cents(self.balance_cents, locale, currency)}")
        if not self.confirmed:
            lines.append(pending_text(self.offline))
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
class BalanceScreen(Screen):
    """A tap with an empty cart shows the balance without charging."""

    balance_cents: int

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        return ScreenText("Balance", (format_cents(self.balance_cents, locale, currency),))


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
