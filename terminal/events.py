"""Events the controller consumes: from readers, buttons, the network adapters and timers."""

from __future__ import annotations

from dataclasses import dataclass, field

from terminal.journal import OfflineView
from terminal.model import DeclineReason, Product, ProductId
from terminal.screens import PriceLine


@dataclass(frozen=True)
class CardPresented:
    """A card in the reader's field. ``already_present``: it was there when the reader (re)started, so
    it is not a tap until it has been taken away (a restart must not charge a resting card again)."""

    uid: str
    already_present: bool = False


@dataclass(frozen=True)
class CardRemoved:
    pass


@dataclass(frozen=True)
class ReaderChanged:
    online: bool
    detail: str = ""


@dataclass(frozen=True)
class TokenChanged:
    """The wallet server refuses the terminal's API token (``refused``), or accepts it again."""

    refused: bool


@dataclass(frozen=True)
class ButtonPressed:
    name: str


@dataclass(frozen=True)
class WalletBalance:
    """The server answered the lookup within the tap budget."""

    uid: str
    balance_cents: int
    pending_cents: int = 0  # this card's sales still in the outbox (owed, not yet on the server)


@dataclass(frozen=True)
class WalletRefused:
    """The server answered the lookup with a definitive no."""

    uid: str
    reason: DeclineReason


@dataclass(frozen=True)
class WalletUnreachable:
    """No answer within the budget (or the circuit breaker is open): decide offline."""

    uid: str
    view: OfflineView


@dataclass(frozen=True)
class ChargeDone:
    """The sale is journaled and the server confirmed it."""

    key: str
    balance_after: int | None


@dataclass(frozen=True)
class ChargeQueued:
    """The sale is journaled and will be delivered by the outbox (offline, ambiguous, or queued)."""

    key: str
    balance_estimate: int | None = None


@dataclass(frozen=True)
class ChargeRejected:
    key: str
    reason: DeclineReason


@dataclass(frozen=True)
class ChargeFailed:
    """The sale could not be journaled, so nothing was sent and nothing may be dispensed."""

    message: str


@dataclass(frozen=True)
class StorageChanged:
    """The journal became unwritable (full disk, read-only) or writable again."""

    ok: bool
    message: str = ""


@dataclass(frozen=True)
class TimerFired:
    token: int


@dataclass(frozen=True)
class ServerChanged:
    online: bool
    unconfirmed: int


@dataclass(frozen=True)
class PricesChanged:
    """Live prices for the board, and which wallet product each configured product is charged as."""

    prices: tuple[PriceLine, ...]
    stale: bool = False
    charge: dict[str, ProductId] = field(default_factory=dict)


@dataclass(frozen=True)
class CatalogChanged:
    """Product prices (from the wallet server's terminal info) changed."""

    products: tuple[Product, ...]


@dataclass(frozen=True)
class UnsellableChanged:
    """Products the server could not book (answered an error to every attempt): not sold offline."""

    products: frozenset[str]


@dataclass(frozen=True)
class Closing:
    """The terminal is stopping (SIGTERM, SIGINT, SIGHUP): finish the tap under way, take no new one."""


Event = (
    CardPresented
    | CardRemoved
    | ReaderChanged
    | TokenChanged
    | ButtonPressed
    | WalletBalance
    | WalletRefused
    | WalletUnreachable
    | ChargeDone
    | ChargeQueued
    | ChargeRejected
    | ChargeFailed
    | StorageChanged
    | TimerFired
    | ServerChanged
    | PricesChanged
    | CatalogChanged
    | UnsellableChanged
    | Closing
)
