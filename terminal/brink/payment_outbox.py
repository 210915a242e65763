"""PAR Brink ApplyPayment records of the one outbox: made with a table sale's ``done``, counted for status.

With ``[table] apply_payment = true``, a booked table sale gets one record per order of the bill it paid
(its ``table_bills`` row, journaled with the sale), inserted in the same transaction that marks the sale
done (the wallet's store commits it: ``terminal/wallet/sale_store.py``), as destination ``brink`` in the
journal's ``outbox`` table. Its ``ref`` is ``bill.payment_key(sale key, terminal id, order id)``, the
value sent as ReferenceDetails ``taptill_key`` and looked for on the order before every send (PAR has no
idempotency key); the terminal id (``[table] terminal_id``) keeps one terminal from taking another's
payment of the same bill for its own. So a table is never paid by wallet without its POS payments
journaled, nor the other way round.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from terminal.brink.bill import payment_key
from terminal.journal import BOOKED_ELSEWHERE_REASON, Journal, SaleRecord
from terminal.outbox.table import REASON_MAX, OutboxRow, insert_statement, rows

DESTINATION = "brink"
REF_NAME = "taptill_key"  # the ReferenceDetails Name the record's ref travels under (design's contract)


@dataclass(frozen=True)
class TablePayment:
    """One ApplyPayment a record stands for: ``amount_cents`` (> 0) on ``order_id`` with ``tender_id``,
    for the bill of ``table_id`` / ``party_id`` on ``business_date`` paid by the sale ``sale_key`` with
    ``card``; ``number`` is the order's number staff see at the POS (None when Brink gave none)."""

    sale_key: str
    order_id: int
    number: int | None
    amount_cents: int
    tender_id: int
    table_id: int
    party_id: int
    business_date: date
    card: str
    terminal_id: str = ""  # ``[table] terminal_id`` of the terminal that made it ("" before it existed)

    @property
    def ref(self) -> str:
        return payment_key(self.sale_key, self.terminal_id, self.order_id)

    def as_payload(self) -> dict[str, Any]:
        return {
            "sale_key": self.sale_key,
            "order_id": self.order_id,
            "number": self.number,
            "amount_cents": self.amount_cents,
            "tender_id": self.tender_id,
            "table_id": self.table_id,
            "party_id": self.party_id,
            "business_date": self.business_date.isoformat(),
            "card": self.card,
            "terminal_id": self.terminal_id,
        }

    @property
    def order_label(self) -> str:
        return f"order {self.number}" if self.number else f"order id {self.order_id}"

    def book_or_refund(self, what: str) -> str:
        """Held advice (``taptill queue``, the held reason) when the POS still owes the amount: ``what``
        happened, book it there by hand or refund the guest, and how to close the record."""
        return (
            f"{what}: book {money(self.amount_cents)} (tender {self.tender_id}) on table {self.table_id} "
            f"{self.order_label} at the POS by hand, or refund {money(self.amount_cents)} to card "
            f"{self.card}; then taptill settle {self.ref} --booked (or --refunded)"
        )

    def refund(self, what: str) -> str:
        """Held advice when the POS no longer owes the amount (the order closed or gone, paid by another
        terminal or at the POS): the only right thing is to refund the guest."""
        return (
            f"{what}: the POS no longer owes it, so refund {money(self.amount_cents)} to card {self.card}; "
            f"then taptill settle {self.ref} --refunded"
        )

    def maybe_applied(self, what: str) -> str:
        """Held advice when an attempt may have been applied (104, 1, 3, a timeout, a drop) and the look
        cannot see the order any more (the party closed, the order gone): the POS may hold our payment,
        found by its reference ``taptill_key``, so staff look before anyone refunds."""
        return (
            f"{what}; unknown if applied: look on table {self.table_id}'s closed bill at the POS for a "
            f"payment with reference {self.ref}; if it is there: taptill settle {self.ref} --booked; if "
            f"not: refund {money(self.amount_cents)} to card {self.card}, then --refunded"
        )

    def unknown(self, what: str) -> str:
        """Held advice when it is not known whether the POS still owes the amount: say so."""
        return (
            f"{what}: unknown whether table {self.table_id} {self.order_label} still owes "
            f"{money(self.amount_cents)}; check it at the POS, then book it there and taptill settle "
            f"{self.ref} --booked, or refund {money(self.amount_cents)} to card {self.card} and taptill "
            f"settle {self.ref} --refunded"
        )


def money(cents: int) -> str:
    """Cents as Brink writes amounts: ``2699`` -> ``26.99``."""
    return f"{Decimal(cents).scaleb(-2):.2f}"


def payment_of(payload: Mapping[str, Any]) -> TablePayment | None:
    """The payment a record's payload describes; None when it cannot be read (a damaged journal)."""
    try:
        number = payload.get("number")
        return TablePayment(
            sale_key=_text(payload["sale_key"]),
            order_id=_whole(payload["order_id"]),
            number=None if number is None else _whole(number),
            amount_cents=_whole(payload["amount_cents"]),
            tender_id=_whole(payload["tender_id"]),
            table_id=_whole(payload["table_id"]),
            party_id=_whole(payload["party_id"]),
            business_date=date.fromisoformat(_text(payload["business_date"])),
            card=_text(payload.get("card", "")),
            terminal_id=_text(payload.get("terminal_id", "")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError  # payment_of catches it: no message is ever read
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError  # payment_of catches it: no message is ever read
    return value


# SQLite reads keywords, tables and columns in any case: a line of SQL naming nothing else carries ``# pragma:
# no mutate`` (its case mutants are the same statement); the column chosen by ``refunded_sale_of`` too.


def table_payments(
    journal: Journal, sale: SaleRecord, tender_id: int, terminal_id: str
) -> list[TablePayment]:
    """The payments the table sale ``sale`` owes the POS, made at ``terminal_id``: one per order of its
    ``table_bills`` row with something due; none for a sale that paid no table bill."""
    found = journal.query(
        "SELECT table_id, party_id, business_date, orders"  # pragma: no mutate
        " FROM table_bills WHERE sale_key = ?",  # pragma: no mutate
        (sale.idempotency_key,),
    )
    if not found:
        return []
    table_id, party_id, day, orders = found[0]
    out = []
    for order in json.loads(str(orders)):
        due = int(order["due_cents"])
        if due <= 0:
            continue
        number = order.get("number")
        out.append(
            TablePayment(
                sale_key=sale.idempotency_key,
                order_id=int(order["order_id"]),
                number=None if number is None else int(number),
                amount_cents=due,
                tender_id=tender_id,
                table_id=int(table_id),
                party_id=int(party_id),
                business_date=date.fromisoformat(str(day)),
                card=sale.token_id,
                terminal_id=terminal_id,
            )
        )
    return out


class PaymentOutbox:
    """Makes the ApplyPayment records of each booked table sale (tender ``tender_id``) of the terminal
    ``terminal_id``."""

    def __init__(self, journal: Journal, tender_id: int, terminal_id: str) -> None:
        self.journal = journal
        self.tender_id = tender_id
        self.terminal_id = terminal_id

    def statements_for(self, sale: SaleRecord) -> list[tuple[str, Sequence[object]]]:
        """The INSERTs of the sale's payment records, to be committed with the sale's ``done``."""
        return [
            insert_statement(DESTINATION, p.ref, p.as_payload(), sale_id=sale.id)
            for p in table_payments(self.journal, sale, self.tender_id, self.terminal_id)
        ]


@dataclass(frozen=True)
class PaymentCounts:
    """The PAR Brink payment records by state; each record in exactly one of the first five counts."""

    applied: int  # done: applied, found applied on a re-read, or booked by hand
    waiting: int  # pending, not held: the terminal applies them (``maybe_sent`` of them looked for first)
    held: int  # pending, held: a person settles them (``taptill queue`` says how)
    rejected: int  # given up by hand (the guest refunded)
    booked_elsewhere: int = 0  # their sale's key was booked by another terminal, which applies them
    maybe_sent: int = 0  # of ``waiting``: the last ApplyPayment may have been applied

    def summary(self) -> str:
        """The one line ``taptill status`` (*PAR Brink*) and ``doctor`` (outbox) both show."""
        return (
            f"{self.applied} payment(s) applied, {self.waiting} waiting"
            + (f" ({self.maybe_sent} maybe applied: looked for first)" if self.maybe_sent else "")
            + f", {self.held} held for staff, {self.rejected} given up"
            + (
                f", {self.booked_elsewhere} left to the terminal that booked their sale"
                if self.booked_elsewhere
                else ""
            )
        )


def payment_counts(journal: Journal) -> PaymentCounts:
    """The one count of the PAR Brink payments ``taptill status`` and ``doctor`` use (a journal of any
    schema version this taptill knows)."""
    # SQLite reads keywords, tables and columns in any case: the plain lines are in lower case, so that
    # mutmut's only case mutant of them upper-cases the quoted state (which the tests catch); the last
    # names nothing else, so any case of it is the same query (issue 18).
    elsewhere = f"state = 'done' AND reason LIKE '{BOOKED_ELSEWHERE_REASON}%'"
    r = journal.query(
        f"SELECT COALESCE(SUM(state = 'done' AND NOT ({elsewhere})), 0),"
        " coalesce(sum(state = 'pending' and hold = 0), 0), coalesce(sum(state = 'pending' and hold = 1), 0),"
        f" COALESCE(SUM(state = 'rejected'), 0), COALESCE(SUM({elsewhere}), 0),"
        " coalesce(sum(state = 'pending' and hold = 0 and maybe_sent = 1), 0)"
        " FROM outbox WHERE destination = ?",  # pragma: no mutate
        (DESTINATION,),
    )[0]
    return PaymentCounts(*(int(v) for v in r))


def held_payments(journal: Journal) -> list[OutboxRow]:
    """The payment records held for staff, oldest first (their reason says what to do)."""
    return [r for r in rows(journal, DESTINATION, ("pending",)) if r.hold]


GIVEN_UP_BY_HAND = "given up by hand: refunded"  # the reason ``give_up_held`` writes
GIVEN_UP_WITH_SALE = "given up: its sale was refunded whole"


def give_up_with_sale(sale_key: str, by: str) -> tuple[str, Sequence[object]]:
    """The statement, committed with the refund of the table sale ``sale_key`` (``Journal.resolve``),
    that ends its payment records held for staff: the sale's refund is theirs too (one refund per
    amount), so none of them asks for a refund again. It changes nothing unless the sale is refunded."""
    return (  # in lower case: mutmut's case mutant then changes a quoted state, which the tests catch
        "update outbox set state = 'rejected', hold = 0, maybe_sent = 0, reason = ?, updated_at = ?"
        " where destination = ? and state = 'pending' and hold = 1 and sale_id ="
        " (select id from sales where idempotency_key = ? and resolved = 'refunded')",
        (
            f"{GIVEN_UP_WITH_SALE} (by {by})"[:REASON_MAX],
            datetime.now(UTC).isoformat(timespec="milliseconds"),
            DESTINATION,
            sale_key,
        ),
    )


def refunded_records(journal: Journal, sale_key: str) -> list[tuple[OutboxRow, TablePayment]]:
    """The payment records of the table sale ``sale_key`` a person gave up as refunded one by one
    (``taptill settle REF --refunded``): their amounts went back to the guest already."""
    return [
        (record, p)
        for record in rows(journal, DESTINATION, ("rejected",))
        if (p := payment_of(record.payload)) is not None
        and p.sale_key == sale_key
        and record.reason.startswith(GIVEN_UP_BY_HAND)
    ]


def refunded_sale_of(journal: Journal, ref: str) -> SaleRecord | None:
    """The sale of the payment record ``ref`` (or ``#id``) when that sale was refunded whole: giving the
    record up as refunded too would refund its amount twice."""
    by_id = ref.startswith("#") and ref[1:].isdigit()
    found = journal.query(
        f"SELECT s.idempotency_key FROM outbox o JOIN sales s ON s.id = o.sale_id WHERE o.destination = ?"
        f" AND o.{'id' if by_id else 'ref'} = ? AND s.resolved = 'refunded'",  # pragma: no mutate
        (DESTINATION, int(ref[1:]) if by_id else ref),
    )
    return journal.sale_by_key(str(found[0][0])) if found else None


def refund_advice(journal: Journal, sale_key: str, sale_cents: int) -> list[str]:
    """What a person does once the table sale ``sale_key`` (``sale_cents`` paid, > 0) was refunded:
    first what of it was refunded already record by record and what is left to give back, then each
    payment record applied (or still to be sent) that stands at the POS until deleted there, and those
    held, given up with the sale (``give_up_with_sale``)."""
    out = []
    before = refunded_records(journal, sale_key)
    if before:
        back = sum(p.amount_cents for _, p in before)
        refs = ", ".join(r.ref for r, _ in before)
        left = max(sale_cents - back, 0)
        out.append(
            f"{money(back)} of the sale's {money(sale_cents)} was refunded already ({refs}): "
            + (f"refund only the {money(left)} left" if left else "nothing is left to refund")
        )
    for record in rows(journal, DESTINATION):
        p = payment_of(record.payload)
        if p is None or p.sale_key != sale_key:
            continue
        where = f"table {p.table_id} {p.order_label}"
        if record.state == "rejected":
            if record.reason.startswith(GIVEN_UP_WITH_SALE):
                out.append(f"{money(p.amount_cents)} on {where} was held: given up with the sale, never sent")
        elif record.state == "done":
            out.append(f"{money(p.amount_cents)} on {where} was applied: delete that payment at the POS")
        elif record.hold:  # held after the refund was recorded (the statement ran before it)
            out.append(
                f"{money(p.amount_cents)} on {where} is held: part of this refund, refund nothing more"
            )
        else:
            out.append(
                f"{money(p.amount_cents)} on {where} is still being applied: once taptill status shows it "
                "applied, delete that payment at the POS"
            )
    return out
