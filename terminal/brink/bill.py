"""The amount due of a party and the idempotency key of paying it (issue 14's design, "Money rules").

An order counts while ``IsClosed`` is false. Its due is ``Balance`` when Brink gave one; else ``Total``
less its payments that are not deleted, less its deposits that are applied and neither deleted nor a
reversal. A negative due is counted as 0 and named in ``problems``. The entries listed for the screen are
those neither voided nor deleted; they are never summed (Brink's Balance/Total already are).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from terminal.brink.party import Entry, Order, Party

# 96 bits of the digest in hex: no two bills share a key by chance, and no "-" in it, which would read like
# the retry suffix ("-2", "-3" …) a bill's later payments add (``Journal.bill_payment``)
KEY_CHARS = 24


@dataclass(frozen=True)
class OrderDue:
    """One open order that has something to pay: ``due_cents`` > 0, its listed entries."""

    order_id: int
    number: int | None
    due_cents: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Bill:
    """What a party owes: the open orders with something due (ascending order id) and their sum (cents);
    ``problems``: printable lines about what was counted as 0 (for a log and for staff)."""

    party_id: int
    table_id: int
    name: str
    orders: tuple[OrderDue, ...]
    total_cents: int
    problems: tuple[str, ...] = ()

    def key(self) -> str:
        """The sale's idempotency key: ``"b"`` + hex(sha256(``brink|{party id}|{order ids ascending,
        comma-separated}|{total cents}``))[:24]. The same bill gives the same key on any
        terminal after any restart; no card is in it, so the same bill is not paid twice by two cards."""
        ids = ",".join(str(o.order_id) for o in sorted(self.orders, key=lambda o: o.order_id))
        digest = hashlib.sha256(f"brink|{self.party_id}|{ids}|{self.total_cents}".encode()).digest()
        return "b" + digest.hex()[:KEY_CHARS]


def payment_key(sale_key: str, terminal_id: str, order_id: int) -> str:
    """The key of the ApplyPayment record for one order of the sale, made at the terminal named
    ``terminal_id`` (``[table] terminal_id``): ``{sale_key}-{terminal_id}-{order_id}``. Two terminals
    paying one bill (the same sale key) make different keys, so neither takes the other's POS payment
    for its own. An empty ``terminal_id`` (records journaled before it existed): ``{sale_key}-{order_id}``."""
    return f"{sale_key}-{terminal_id}-{order_id}" if terminal_id else f"{sale_key}-{order_id}"


def amount_due(party: Party) -> Bill:
    """The bill of ``party`` by the rule in this module's docstring."""
    orders: list[OrderDue] = []
    problems: list[str] = []
    for order in sorted(party.orders, key=lambda o: o.id):
        if order.is_closed:
            continue
        due = order_due(order)
        if due < 0:
            problems.append(
                f"order {order.number or order.id}: {_money(due)} due (more paid than owed); counted as 0"
            )
            continue
        if due > 0:
            entries = tuple(e for e in order.entries if not (e.is_voided or e.is_deleted))
            orders.append(OrderDue(order.id, order.number, due, entries))
    return Bill(
        party_id=party.id,
        table_id=party.table_id,
        name=party.name,
        orders=tuple(orders),
        total_cents=sum(o.due_cents for o in orders),
        problems=tuple(problems),
    )


def order_due(order: Order) -> int:
    """What ``order`` still owes in cents (negative when it is overpaid), whether closed or not."""
    if order.balance_cents is not None:
        return order.balance_cents
    paid = sum(p.amount_cents for p in order.payments if not p.is_deleted)
    deposited = sum(
        d.amount_cents for d in order.deposits if d.is_applied and not d.is_deleted and not d.is_reversal
    )
    return order.total_cents - paid - deposited


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"
