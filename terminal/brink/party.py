"""A PAR Brink party as GetParty answers it (seed 003), reduced to what paying its bill needs.

Amounts are integer cents (converted from Brink's decimals with ``Decimal``); text is printable (it came
from the POS and may reach a screen or a log). Voided and deleted entries are kept, flagged: ``bill``
decides what counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EntryKind = Literal["item", "giftcard"]


@dataclass(frozen=True)
class Entry:
    """One OrderEntry: an ``OrderItem`` ("item") or an ``OrderGiftCard`` ("giftcard"); price in cents."""

    kind: EntryKind
    id: int
    description: str
    price_cents: int
    is_voided: bool = False
    is_deleted: bool = False


@dataclass(frozen=True)
class Payment:
    """One OrderPayment; ``additional``: its AdditionalData Name/Value pairs (the ReferenceDetails it was
    applied with, e.g. ``("taptill_key", "b…-99001")``)."""

    id: int
    amount_cents: int
    is_deleted: bool
    tender_id: int | None
    additional: tuple[tuple[str, str], ...] = ()

    def reference(self, name: str) -> str | None:
        """The value of AdditionalData ``name``, or None."""
        return next((value for key, value in self.additional if key == name), None)


@dataclass(frozen=True)
class Deposit:
    """One OrderDeposit; only an applied one that is neither deleted nor a reversal pays the order."""

    amount_cents: int
    is_applied: bool
    is_deleted: bool
    is_reversal: bool


@dataclass(frozen=True)
class Order:
    """One Order of the party; ``balance_cents`` is None when Brink gave no ``Balance`` (or ``i:nil``)."""

    id: int
    number: int | None
    name: str
    is_closed: bool
    total_cents: int
    balance_cents: int | None
    payments: tuple[Payment, ...] = ()
    deposits: tuple[Deposit, ...] = ()
    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class Party:
    """The open party at a table on a business date."""

    id: int
    name: str
    table_id: int
    orders: tuple[Order, ...] = ()
