"""Events the controller consumes: from readers, buttons, the network adapters and timers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from terminal.journal import OfflineView
from terminal.model import DeclineReason, Product, ProductId
from terminal.screens import PriceLine
from terminal.screens.table import BillLine, BillProblem


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
    """The sale is journaled and the server confirmed it. ``already``: the server had booked the sale's
    key before this terminal ever sent it (202 to a key the mode chose, e.g. a table bill paid at another
    terminal): no money moved now, nothing is dispensed."""

    key: str
    balance_after: int | None
    already: bool = False


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
class StockChanged:
    """What the stock ledger (yourbarmate, issue 15) says now, by wallet product id: ``left`` has the
    whole servings left of each product sold only while it lasts (``stop_when_empty``; a product not in
    it is not limited), so no tap or cart takes more than that; ``low`` has fewer than ``low_servings``
    left (a mark for staff on the idle screen)."""

    left: Mapping[str, int]
    low: frozenset[str] = frozenset()
    # The stock watch numbers what it says (0: unnumbered). A word read before a sale but queued behind
    # the word that sale handed over directly is older than what the controller knows: it is dropped.
    seq: int = field(default=0, compare=False)

    @property
    def sold_out(self) -> frozenset[str]:
        """The products with not one serving left: shown "sold out" and not sold."""
        return frozenset(p for p, n in self.left.items() if n <= 0)


@dataclass(frozen=True)
class Closing:
    """The terminal is stopping (SIGTERM, SIGINT, SIGHUP): finish the tap under way, take no new one."""


@dataclass(frozen=True)
class BillOrder:
    """One open order of a table's bill: the POS's order id and number, what is due on it (cents)."""

    order_id: int
    number: int | None
    due_cents: int


@dataclass(frozen=True)
class TableBill:
    """What a table owes, as the terminal read it from the POS: ``key`` is the bill's idempotency key
    (terminal/brink/bill.py: the party, its open orders and the amount), the same for everyone who reads
    the same bill; ``business_date`` is ISO (``YYYY-MM-DD``)."""

    key: str
    table_id: int
    party_id: int
    business_date: str
    amount_cents: int
    orders: tuple[BillOrder, ...] = ()
    lines: tuple[BillLine, ...] = ()


@dataclass(frozen=True)
class BillRead:
    """The answer to FetchBill ``token``: the table's bill, or why there is none (``problem``, with a
    ``detail`` for the log). ``paid`` tells what the journal holds under the bill's key already: "done"
    (this bill was paid here), "pending" (paid here, being confirmed) or None; ``pay_key`` is the key a
    new payment of it uses (the bill's key, or with "-2", "-3"… after earlier attempts that moved no
    money)."""

    token: int
    table_id: int
    bill: TableBill | None
    problem: BillProblem | None = None
    detail: str = ""
    paid: str | None = None
    pay_key: str | None = None


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
    | StockChanged
    | Closing
    | BillRead
)
