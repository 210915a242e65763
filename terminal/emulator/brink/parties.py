"""One emulated Brink location's parties, orders and the payments applied to them, behind one lock.

Amounts are kept as the decimal strings they are given (``"24.995"`` stays three decimals, for the
client's refusal); sums are Decimal. An order's ``Total`` is the sum of its live entries' prices and
taxes unless a test sets ``total``; ``balance`` is the optional ``Balance`` element (None: absent,
``NIL``: ``i:nil="true"``). Its due, as the design's money rules say: ``balance`` when given, else
``Total`` − live payments − applied deposits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

NIL = "nil"  # a Balance rendered as <Balance i:nil="true"/>
ZERO = Decimal("0.00")


def amount(text: str) -> Decimal:
    """A decimal string as Decimal; ValueError (one line) if it is not a plain decimal number."""
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError):
        raise ValueError(f"{text!r} is not a decimal amount; write it like 24.99") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a decimal amount; write it like 24.99")
    return value


@dataclass
class Entry:
    """An OrderItem (``gift_card`` False) or OrderGiftCard line; ``price`` and ``tax`` in currency units."""

    id: int
    description: str
    price: str
    tax: str = "0.00"
    item_id: int = 100
    gift_card: bool = False
    voided: bool = False
    deleted: bool = False
    note: str | None = None

    @property
    def live(self) -> bool:
        return not (self.voided or self.deleted)


@dataclass
class Payment:
    """An OrderPayment: ``additional`` holds the ReferenceDetails it was applied with (Name → Value)."""

    id: int
    amount: str
    tender_id: int
    business_date: date
    tip: str = "0.00"
    deleted: bool = False
    additional: dict[str, str] = field(default_factory=dict)


@dataclass
class Deposit:
    """An OrderDeposit; only an applied, not deleted, non-reversal one lowers the due."""

    id: int
    amount: str
    business_date: date
    tender_id: int = 1
    applied: bool = True
    deleted: bool = False
    reversal: bool = False
    original_id: int | None = None
    payment_id: int = 0

    @property
    def counts(self) -> bool:
        return self.applied and not self.deleted and not self.reversal


@dataclass
class Order:
    """One order of a party; ``total``/``tax`` None: computed from the live entries."""

    id: int
    entries: list[Entry] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    deposits: list[Deposit] = field(default_factory=list)
    name: str = "Guest 1"
    number: int = 0
    total: str | None = None
    tax: str | None = None
    balance: str | None = None
    closed_time: str | None = None  # UTC, "2024-01-15T19:00:00Z"; set: IsClosed true
    created_time: str = "2024-01-15T18:05:00Z"

    @property
    def is_closed(self) -> bool:
        return self.closed_time is not None

    def subtotal(self) -> Decimal:
        return sum((amount(e.price) for e in self.entries if e.live), ZERO)

    def tax_amount(self) -> Decimal:
        if self.tax is not None:
            return amount(self.tax)
        return sum((amount(e.tax) for e in self.entries if e.live), ZERO)

    def total_amount(self) -> Decimal:
        return amount(self.total) if self.total is not None else self.subtotal() + self.tax_amount()

    def due(self) -> Decimal:
        """What is left to pay (currency units): Balance when given, else Total − payments − deposits."""
        if self.balance is not None and self.balance != NIL:
            return amount(self.balance)
        paid = sum((amount(p.amount) for p in self.payments if not p.deleted), ZERO)
        deposited = sum((amount(d.amount) for d in self.deposits if d.counts), ZERO)
        return self.total_amount() - paid - deposited


@dataclass
class Party:
    """A table's party on a business date; GetParty finds it by (business_date, table_id)."""

    id: int
    table_id: int
    business_date: date
    orders: list[Order] = field(default_factory=list)
    name: str | None = None
    created_time: str = "2024-01-15T18:00:00Z"
    owner_employee_id: int = 42
    size: int = 2

    @property
    def key(self) -> tuple[date, int]:
        return self.business_date, self.table_id

    @property
    def title(self) -> str:
        return self.name if self.name is not None else f"Table {self.table_id}"


@dataclass(frozen=True)
class AppliedPayment:
    """One ApplyPayment the location accepted (the ledger tests read): amounts as sent."""

    order_id: int
    party_id: int
    table_id: int
    business_date: date
    payment_id: int
    amount: str
    tender_id: int
    tip: str
    reference: dict[str, str]
    closed_order: bool
    at: float  # emulator clock, epoch seconds

    def to_json(self) -> dict[str, object]:
        return {
            "order_id": self.order_id,
            "party_id": self.party_id,
            "table_id": self.table_id,
            "business_date": self.business_date.isoformat(),
            "payment_id": self.payment_id,
            "amount": self.amount,
            "tender_id": self.tender_id,
            "tip": self.tip,
            "reference": dict(self.reference),
            "closed_order": self.closed_order,
            "at": self.at,
        }


class PartyError(LookupError):
    """A control action names a party, order or entry the location does not have."""


# ApplyPayment result codes (design's wire contract)
OK, PAYMENT_REFUSED, ORDER_NOT_FOUND, ORDER_CLOSED, TENDER_ERROR = 0, 101, 102, 103, 106


class Location:
    """The parties of one location, its tenders and the ledger of applied payments; thread-safe.

    Every public method takes the lock; the server renders a party while holding ``lock``.
    """

    def __init__(self, now: Callable[[], float], tenders: Iterable[int] = (1, 7)) -> None:
        self.now = now
        self.lock = threading.RLock()
        self.tenders = set(tenders)
        self._parties: dict[tuple[date, int], Party] = {}
        self._ledger: list[AppliedPayment] = []

    # --- parties ----------------------------------------------------------------------------------------

    def put_party(self, party: Party) -> Party:
        """Add ``party``, replacing the one at its (business date, table)."""
        with self.lock:
            self._parties[party.key] = party
            return party

    def party(self, business_date: date, table_id: int) -> Party | None:
        with self.lock:
            return self._parties.get((business_date, table_id))

    def parties(self) -> list[Party]:
        with self.lock:
            return list(self._parties.values())

    def close_party(self, business_date: date, table_id: int) -> Party:
        """Staff close the party at the POS: GetParty answers 101 from now on."""
        with self.lock:
            party = self._parties.pop((business_date, table_id), None)
            if party is None:
                raise PartyError(f"no party at table {table_id} on {business_date.isoformat()}")
            return party

    def add_order(self, business_date: date, table_id: int, order: Order) -> Order:
        with self.lock:
            party = self.party(business_date, table_id)
            if party is None:
                raise PartyError(f"no party at table {table_id} on {business_date.isoformat()}")
            party.orders.append(order)
            return order

    # --- orders --------------------------------------------------------------------------------------------

    def order(self, order_id: int) -> tuple[Party, Order]:
        """The order ``order_id`` and its party; PartyError if no party holds it."""
        with self.lock:
            for party in self._parties.values():
                for order in party.orders:
                    if order.id == order_id:
                        return party, order
            raise PartyError(f"no order {order_id}")

    def add_entry(self, order_id: int, entry: Entry) -> Entry:
        with self.lock:
            self.order(order_id)[1].entries.append(entry)
            return entry

    def mark_entry(
        self, order_id: int, entry_id: int, *, voided: bool = False, deleted: bool = False
    ) -> Entry:
        """Void or delete a line (it stays listed, flagged, and stops counting)."""
        with self.lock:
            for entry in self.order(order_id)[1].entries:
                if entry.id == entry_id:
                    entry.voided = entry.voided or voided
                    entry.deleted = entry.deleted or deleted
                    return entry
            raise PartyError(f"order {order_id} has no entry {entry_id}")

    def add_payment(self, order_id: int, payment: Payment) -> Payment:
        """A payment taken at the POS (``deleted`` True: one staff deleted since)."""
        with self.lock:
            self.order(order_id)[1].payments.append(payment)
            return payment

    def add_deposit(self, order_id: int, deposit: Deposit) -> Deposit:
        with self.lock:
            self.order(order_id)[1].deposits.append(deposit)
            return deposit

    def set_order(self, order_id: int, **fields: str | None) -> Order:
        """Set ``total``, ``tax``, ``balance`` or ``closed_time`` of an order (None: computed/absent)."""
        allowed = {"total", "tax", "balance", "closed_time"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot set {sorted(unknown)} on an order; use {sorted(allowed)}")
        with self.lock:
            order = self.order(order_id)[1]
            for name, value in fields.items():
                if value is not None and name != "closed_time" and not (name == "balance" and value == NIL):
                    amount(value)
                setattr(order, name, value)
            return order

    # --- ApplyPayment ----------------------------------------------------------------------------------

    def apply_payment(
        self, order_id: int, amount_text: str, tender_id: int, tip: str, reference: dict[str, str]
    ) -> tuple[int, str]:
        """Record a payment on an open order: (result code, message). Closes the order at due 0.00.

        102 unknown order, 103 closed, 106 unknown tender, 101 amount not above 0 or above the due.
        """
        with self.lock:
            try:
                party, order = self.order(order_id)
            except PartyError:
                return ORDER_NOT_FOUND, f"Order {order_id} was not found"
            if order.is_closed:
                return ORDER_CLOSED, f"Order {order_id} is already closed"
            if tender_id not in self.tenders:
                return TENDER_ERROR, f"Tender {tender_id} is not valid at this location"
            paid = amount(amount_text)
            if paid <= 0 or paid > order.due():
                return PAYMENT_REFUSED, f"Payment of {amount_text} could not be processed"
            payment_id = 1 + max((p.id for p in order.payments), default=0)
            order.payments.append(
                Payment(payment_id, amount_text, tender_id, party.business_date, tip, False, dict(reference))
            )
            if order.balance is not None and order.balance != NIL:
                order.balance = str(amount(order.balance) - paid)
            closed = order.due() <= 0
            if closed:
                order.closed_time = datetime.fromtimestamp(self.now(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._ledger.append(
                AppliedPayment(
                    order_id,
                    party.id,
                    party.table_id,
                    party.business_date,
                    payment_id,
                    amount_text,
                    tender_id,
                    tip,
                    dict(reference),
                    closed,
                    self.now(),
                )
            )
            return OK, "Success"

    def applied_payments(self) -> list[AppliedPayment]:
        with self.lock:
            return list(self._ledger)
