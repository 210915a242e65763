"""PAR Brink payment records read back and counted, in-process on a real journal file: a record's payload
read into the payment it stands for (older records without a card or terminal id, an order without a
number), and the counts and the one line ``taptill status`` and ``doctor`` show."""

from __future__ import annotations

import json
from datetime import date

import pytest

from terminal.brink.bill import payment_key
from terminal.brink.payment_outbox import (
    DESTINATION,
    PaymentCounts,
    TablePayment,
    give_up_with_sale,
    held_payments,
    payment_counts,
    payment_of,
    refund_advice,
    refunded_records,
    refunded_sale_of,
    table_payments,
)
from terminal.journal import BOOKED_ELSEWHERE_REASON, Journal, SaleRecord
from terminal.outbox.table import insert_statement, rows
from tests.terminal_lab import journal_sale

PAYMENT = TablePayment(
    sale_key="tKey00000000000000000001",
    order_id=70101,
    number=2101,
    amount_cents=1111,
    tender_id=9,
    table_id=1,
    party_id=60001,
    business_date=date(2026, 12, 2),
    card="04A1B2C3",
    terminal_id="bar1",
)


def test_a_record_reads_back_as_the_payment_it_was_made_from() -> None:
    assert payment_of(PAYMENT.as_payload()) == PAYMENT


@pytest.mark.parametrize(
    ("field", "value"),
    [("order_id", True), ("amount_cents", "1111"), ("number", 2101.0), ("card", 4), ("sale_key", None)],
)
def test_a_damaged_record_reads_as_no_payment(field: str, value: object) -> None:
    assert payment_of({**PAYMENT.as_payload(), field: value}) is None
    payload = PAYMENT.as_payload()
    del payload[field]
    assert (payment_of(payload) is None) is (field not in ("number", "card")), (
        "number and card may be missing"
    )


def test_an_order_without_a_number_reads_as_none() -> None:
    payload = {**PAYMENT.as_payload(), "number": None}
    assert payment_of(payload) == TablePayment(**{**PAYMENT.__dict__, "number": None})


def test_a_record_from_before_cards_and_terminal_ids_reads_with_empty_ones() -> None:
    payload = PAYMENT.as_payload()
    del payload["card"], payload["terminal_id"]
    assert payment_of(payload) == TablePayment(**{**PAYMENT.__dict__, "card": "", "terminal_id": ""})


@pytest.mark.parametrize(
    ("counts", "line"),
    [
        (
            PaymentCounts(applied=3, waiting=2, held=1, rejected=4),
            "3 payment(s) applied, 2 waiting, 1 held for staff, 4 given up",
        ),
        (
            PaymentCounts(applied=3, waiting=2, held=1, rejected=4, booked_elsewhere=5, maybe_sent=1),
            "3 payment(s) applied, 2 waiting (1 maybe applied: looked for first), 1 held for staff,"
            " 4 given up, 5 left to the terminal that booked their sale",
        ),
    ],
)
def test_the_status_line_names_maybe_applied_and_booked_elsewhere_records_only_when_there_are_some(
    counts: PaymentCounts, line: str
) -> None:
    assert counts.summary() == line


def test_each_record_is_counted_once_by_its_state(journal: Journal) -> None:
    """Each count a different number, so no two can be swapped; another destination's records not counted."""
    states = (
        [("done", "applied", 0, 0)] * 1
        + [("done", f"{BOOKED_ELSEWHERE_REASON}by bar2", 0, 0)] * 2
        + [("pending", "", 0, 0)] * 3
        + [("pending", "timed out", 0, 1)] * 4
        + [("pending", "held", 1, 1)] * 5
        + [("rejected", "given up by hand: refunded", 0, 0)] * 6
    )
    for n, _ in enumerate(states):
        journal.execute_all(
            [insert_statement(DESTINATION, f"p{n}", {}), insert_statement("ready2order", f"i{n}", {})]
        )
    for n, (state, reason, hold, maybe_sent) in enumerate(states):
        journal.execute(
            "UPDATE outbox SET state = ?, reason = ?, hold = ?, maybe_sent = ? WHERE ref = ?",
            (state, reason, hold, maybe_sent, f"p{n}"),
        )
    assert payment_counts(journal) == PaymentCounts(
        applied=1, waiting=7, held=5, rejected=6, booked_elsewhere=2, maybe_sent=4
    )


def test_a_journal_without_payment_records_counts_none(journal: Journal) -> None:
    assert payment_counts(journal) == PaymentCounts(0, 0, 0, 0, 0, 0)


# --- a refunded table sale and its payment records ----------------------------------------------------------


def _sale_with_payments(journal: Journal, orders: dict[int, tuple[int, str, str, int]]) -> str:
    """A table sale of 50.00 and one payment record per order: order id -> (cents, state, reason, hold)."""
    sale = journal_sale(journal, [], -5000, uid=PAYMENT.card)
    key = sale.idempotency_key
    for order_id, (cents, state, reason, hold) in orders.items():
        payment = TablePayment(
            **{**PAYMENT.__dict__, "sale_key": key, "order_id": order_id, "amount_cents": cents}
        )
        journal.execute_all(
            [insert_statement(DESTINATION, payment.ref, payment.as_payload(), sale_id=sale.id)]
        )
        journal.execute(
            "UPDATE outbox SET state = ?, reason = ?, hold = ?, maybe_sent = ? WHERE ref = ?",
            (state, reason, hold, hold, payment.ref),
        )
    return key


def _refunded(journal: Journal, key: str) -> None:
    journal.execute("UPDATE sales SET resolved = 'refunded' WHERE idempotency_key = ?", (key,))


def test_held_payments_are_the_pending_held_ones_oldest_first(journal: Journal) -> None:
    key = _sale_with_payments(
        journal,
        {
            1: (100, "pending", "held: a", 1),
            2: (200, "pending", "", 0),
            3: (300, "pending", "held: b", 1),
            4: (400, "rejected", "held once", 1),
        },
    )
    journal.execute_all([insert_statement("ready2order", "i1", {})])
    journal.execute("UPDATE outbox SET hold = 1 WHERE ref = 'i1'")
    assert [(r.ref, r.reason) for r in held_payments(journal)] == [
        (payment_key(key, "bar1", 1), "held: a"),
        (payment_key(key, "bar1", 3), "held: b"),
    ]


def test_a_refund_of_the_whole_sale_gives_up_its_held_payments_only(journal: Journal) -> None:
    key = _sale_with_payments(
        journal, {1: (100, "pending", "held", 1), 2: (200, "pending", "", 0), 3: (300, "done", "applied", 0)}
    )
    other = _sale_with_payments(journal, {9: (900, "pending", "held", 1)})
    journal.execute_all([give_up_with_sale(key, "anna")])
    assert [r.state for r in rows(journal, DESTINATION)] == ["pending", "pending", "done", "pending"], (
        "nothing changes before the sale is refunded"
    )
    _refunded(journal, key)
    _refunded(journal, other)
    journal.execute_all([give_up_with_sale(key, "anna")])
    assert [(r.state, r.hold, r.maybe_sent, r.reason) for r in rows(journal, DESTINATION)] == [
        ("rejected", False, False, "given up: its sale was refunded whole (by anna)"),
        ("pending", False, False, ""),
        ("done", False, False, "applied"),
        ("pending", True, True, "held"),
    ]
    assert rows(journal, DESTINATION)[0].updated_at.endswith("+00:00"), "stamped in UTC like every write"


def test_the_refunded_sale_of_a_record_is_found_by_its_ref_or_its_id(journal: Journal) -> None:
    key = _sale_with_payments(journal, {1: (100, "pending", "held", 1)})
    (record,) = rows(journal, DESTINATION)
    assert refunded_sale_of(journal, record.ref) is None, "not refunded"
    _refunded(journal, key)
    for ref in (record.ref, f"#{record.id}"):
        found = refunded_sale_of(journal, ref)
        assert found is not None and found.idempotency_key == key, ref
    assert refunded_sale_of(journal, "#x1") is None and refunded_sale_of(journal, str(record.id)) is None
    assert refunded_sale_of(journal, "#999") is None


def test_refunded_records_are_those_a_person_gave_up_as_refunded_for_this_sale(journal: Journal) -> None:
    key = _sale_with_payments(
        journal,
        {
            1: (100, "rejected", "given up by hand: refunded (by anna)", 0),
            2: (200, "rejected", "given up: its sale was refunded whole", 0),
            3: (300, "done", "applied", 0),
            4: (400, "rejected", "given up by hand: refunded (by bob)", 0),
        },
    )
    _sale_with_payments(journal, {1: (100, "rejected", "given up by hand: refunded (by anna)", 0)})
    payload = {**PAYMENT.as_payload(), "sale_key": key, "order_id": 5}
    journal.execute_all(
        [
            insert_statement("ready2order", "i5", payload),
            insert_statement(DESTINATION, "p6", {**payload, "order_id": 6}),
        ]
    )
    journal.execute(
        "UPDATE outbox SET state = 'rejected', reason = 'given up by hand: refunded' WHERE ref = 'i5'"
    )
    journal.execute("UPDATE outbox SET reason = 'given up by hand: refunded' WHERE ref = 'p6'")
    assert [(r.ref, p.amount_cents) for r, p in refunded_records(journal, key)] == [
        (payment_key(key, "bar1", 1), 100),
        (payment_key(key, "bar1", 4), 400),
    ]


def test_refund_advice_says_what_was_given_back_and_what_stands_at_the_pos(journal: Journal) -> None:
    _sale_with_payments(journal, {8: (800, "done", "applied", 0)})  # another sale's, journaled first
    key = _sale_with_payments(
        journal,
        {
            1: (1000, "rejected", "given up by hand: refunded (by anna)", 0),
            2: (1250, "rejected", "given up: its sale was refunded whole (by bob)", 0),
            3: (500, "done", "applied", 0),
            4: (700, "pending", "held", 1),
            5: (300, "pending", "", 0),
            6: (200, "rejected", "rejected by the POS", 0),
        },
    )
    assert refund_advice(journal, key, 5000) == [
        f"10.00 of the sale's 50.00 was refunded already ({payment_key(key, 'bar1', 1)}):"
        " refund only the 40.00 left",
        "12.50 on table 1 order 2101 was held: given up with the sale, never sent",
        "5.00 on table 1 order 2101 was applied: delete that payment at the POS",
        "7.00 on table 1 order 2101 is held: part of this refund, refund nothing more",
        "3.00 on table 1 order 2101 is still being applied: once taptill status shows it applied, delete that"
        " payment at the POS",
    ]
    assert refund_advice(journal, key, 1000)[0].endswith("): nothing is left to refund")
    assert refund_advice(journal, key, 900)[0].endswith("): nothing is left to refund")


def test_refund_advice_of_a_sale_nothing_was_refunded_of_names_only_its_records(journal: Journal) -> None:
    key = _sale_with_payments(journal, {1: (500, "done", "applied", 0)})
    _sale_with_payments(journal, {2: (700, "done", "applied", 0)})
    payload = {**PAYMENT.as_payload(), "sale_key": key}
    journal.execute_all(
        [
            insert_statement(DESTINATION, "damaged", {"sale_key": key}),
            insert_statement("ready2order", "i1", payload),
        ]
    )
    assert refund_advice(journal, key, 500) == [
        "5.00 on table 1 order 2101 was applied: delete that payment at the POS"
    ]


def test_two_records_refunded_by_hand_are_named_together(journal: Journal) -> None:
    key = _sale_with_payments(
        journal,
        {
            1: (1000, "rejected", "given up by hand: refunded (by anna)", 0),
            2: (1500, "rejected", "given up by hand: refunded (by anna)", 0),
        },
    )
    refs = f"{payment_key(key, 'bar1', 1)}, {payment_key(key, 'bar1', 2)}"
    assert refund_advice(journal, key, 2500)[0] == (
        f"25.00 of the sale's 25.00 was refunded already ({refs}): nothing is left to refund"
    )


def _bill(journal: Journal, orders: list[dict[str, object]]) -> SaleRecord:
    sale = journal_sale(journal, [], -5000, uid=PAYMENT.card)
    journal.execute(
        "INSERT INTO table_bills (sale_key, table_id, party_id, business_date, orders, amount_cents,"
        " created_at)"
        " VALUES (?, 1, 60001, '2026-12-02', ?, 5000, 'now')",
        (sale.idempotency_key, json.dumps(orders)),
    )
    return sale


def test_a_bill_gets_one_payment_per_order_with_something_due(journal: Journal) -> None:
    sale = _bill(
        journal,
        [
            {"order_id": 1, "number": 11, "due_cents": 0},
            {"order_id": 2, "number": None, "due_cents": 1},
            {"order_id": 3, "due_cents": 4999},
            {"order_id": 4, "number": 14, "due_cents": -5},
        ],
    )
    made = table_payments(journal, sale, 9, "bar1")
    assert [(p.order_id, p.number, p.amount_cents) for p in made] == [(2, None, 1), (3, None, 4999)]
    assert made[0] == TablePayment(
        **{
            **PAYMENT.__dict__,
            "sale_key": sale.idempotency_key,
            "order_id": 2,
            "number": None,
            "amount_cents": 1,
        }
    )
    assert table_payments(journal, journal_sale(journal, [], -100), 9, "bar1") == [], "no table bill"
