"""PAR Brink payment records read back and counted, in-process on a real journal file: a record's payload
read into the payment it stands for (older records without a card or terminal id, an order without a
number), and the counts and the one line ``taptill status`` and ``doctor`` show."""

from __future__ import annotations

from datetime import date

import pytest

from terminal.brink.payment_outbox import (
    DESTINATION,
    PaymentCounts,
    TablePayment,
    payment_counts,
    payment_of,
)
from terminal.journal import BOOKED_ELSEWHERE_REASON, Journal
from terminal.outbox.table import insert_statement

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
