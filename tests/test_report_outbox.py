"""ReportOutbox and report_counts on a real SQLite journal: which Partybroker records a booked sale's ``done``
commits (drink, quantity, ref, sale), which sales report nothing, the one warning of an unmapped product,
and the counts ``taptill status`` prints for each state."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from terminal.journal import Journal, SaleRecord
from terminal.model import ProductId
from terminal.outbox.table import OutboxRow, OutboxTable, insert_statement, rows
from terminal.partybroker.config import DrinkMapping, PartybrokerConfig
from terminal.partybroker.outcomes import DrinkRef
from terminal.partybroker.report_outbox import DESTINATION, ReportCounts, ReportOutbox, report_counts
from tests.terminal_lab import journal_sale

LOGGER = "terminal.partybroker.report_outbox"
UNMAPPED = "product {} has no [partybroker.drinks] entry: its sales are not reported"


def outbox_of(journal: Journal) -> ReportOutbox:
    """Espresso and beer are Partybroker drinks; beer is also sold at the fixed-price ladder steps 101
    and 102 (wallet products of their own); water has no entry."""
    cfg = PartybrokerConfig(
        base_url="http://127.0.0.1:9",
        party_id="1234",
        username="bar",
        password_file=None,
        drinks={
            "espresso": DrinkMapping(DrinkRef(id=7)),
            "beer": DrinkMapping(DrinkRef(external_id="B1"), ladder=(101, 102)),
        },
    )
    return ReportOutbox(journal, cfg)


def sale(journal: Journal, products: Sequence[ProductId], amount_cents: int = -250) -> SaleRecord:
    return journal_sale(journal, products, amount_cents)


def book(journal: Journal, outbox: ReportOutbox, record: SaleRecord) -> list[OutboxRow]:
    """Marks the sale done with its reports, as the wallet's store does, and returns the sale's records."""
    journal.mark_done(record.id, 1000, also=outbox.statements_for(record))
    return [r for r in rows(journal, DESTINATION) if r.sale_id == record.id]


def reported(records: Sequence[OutboxRow]) -> list[tuple[str, object]]:
    return [(r.ref, r.payload) for r in records]


# --- which drinks a sale reports ---------------------------------------------------------------------------


def test_a_debit_reports_each_drink_once_with_its_quantity(journal: Journal) -> None:
    outbox = outbox_of(journal)
    record = sale(journal, ["espresso", "beer", "espresso"])
    records = book(journal, outbox, record)
    key = record.idempotency_key
    assert reported(records) == [
        (f"{key}/espresso", {"drink_key": "espresso", "quantity": 2}),
        (f"{key}/beer", {"drink_key": "beer", "quantity": 1}),
    ]
    assert [(r.destination, r.sale_id, r.state, r.attempts, r.maybe_sent, r.hold) for r in records] == [
        (DESTINATION, record.id, "pending", 0, False, False)
    ] * 2


def test_a_ladder_step_is_reported_as_the_drink_it_prices(journal: Journal) -> None:
    outbox = outbox_of(journal)
    assert (outbox.drink_key(101), outbox.drink_key("102"), outbox.drink_key("beer")) == ("beer",) * 3
    assert (outbox.drink_key("espresso"), outbox.drink_key(103), outbox.drink_key("water")) == (
        "espresso",
        None,
        None,
    )
    record = sale(journal, [101, 102, "beer"])
    assert reported(book(journal, outbox, record)) == [
        (f"{record.idempotency_key}/beer", {"drink_key": "beer", "quantity": 3})
    ]


def test_each_sale_reports_under_its_own_key(journal: Journal) -> None:
    outbox = outbox_of(journal)
    first, second = sale(journal, ["espresso"]), sale(journal, ["espresso"])
    book(journal, outbox, first)
    book(journal, outbox, second)
    assert [(r.ref, r.sale_id) for r in rows(journal, DESTINATION)] == [
        (f"{first.idempotency_key}/espresso", first.id),
        (f"{second.idempotency_key}/espresso", second.id),
    ]


@pytest.mark.parametrize("amount_cents", [0, 1, 1000], ids=["free", "one-cent-credit", "top-up"])
def test_a_sale_that_debits_nothing_reports_no_drink(journal: Journal, amount_cents: int) -> None:
    outbox = outbox_of(journal)
    record = sale(journal, ["espresso", "beer"], amount_cents)
    assert outbox.statements_for(record) == []


def test_a_one_cent_debit_still_reports_its_drink(journal: Journal) -> None:
    outbox = outbox_of(journal)
    record = sale(journal, ["espresso"], -1)
    assert reported(book(journal, outbox, record)) == [
        (f"{record.idempotency_key}/espresso", {"drink_key": "espresso", "quantity": 1})
    ]


def test_an_unmapped_product_is_left_out_and_the_rest_reported(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = outbox_of(journal)
    caplog.set_level(logging.WARNING, LOGGER)
    record = sale(journal, ["water", "espresso", "water", "beer"])
    assert reported(book(journal, outbox, record)) == [
        (f"{record.idempotency_key}/espresso", {"drink_key": "espresso", "quantity": 1}),
        (f"{record.idempotency_key}/beer", {"drink_key": "beer", "quantity": 1}),
    ]
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (LOGGER, logging.WARNING, UNMAPPED.format("water"))
    ]


def test_an_unmapped_product_is_warned_about_once_per_product(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = outbox_of(journal)
    caplog.set_level(logging.WARNING, LOGGER)
    sold: list[list[ProductId]] = [["water"], [5, "water"], ["water", 5], ["espresso"]]
    for products in sold:
        outbox.statements_for(sale(journal, products))
    assert [r.getMessage() for r in caplog.records] == [
        UNMAPPED.format("water"),
        UNMAPPED.format(5),
    ]
    assert outbox.statements_for(sale(journal, ["water"])) == []


# --- the counts `taptill status` prints -------------------------------------------------------------------


def add_report(journal: Journal, ref: str, quantity: int, destination: str = DESTINATION) -> None:
    journal.execute(*insert_statement(destination, ref, {"drink_key": "beer", "quantity": quantity}))


def test_an_empty_journal_counts_nothing(journal: Journal) -> None:
    assert report_counts(journal) == ReportCounts(0, 0, 0, 0, 0)


def test_the_counts_of_each_state_and_their_units(journal: Journal) -> None:
    table = OutboxTable(journal, DESTINATION)
    for ref, quantity in (
        ("p1", 1),
        ("p2", 4),
        ("p3", 8),
        ("d1", 2),
        ("d2", 3),
        ("a1", 9),
        ("r1", 6),
        ("r2", 7),
    ):
        add_report(journal, ref, quantity)
    by_ref = {r.ref: r for r in table.due(100)}
    table.done([by_ref["d1"], by_ref["d2"]], None, by_settling=False)
    table.gave_up([by_ref["a1"]], "maybe applied")
    table.rejected([by_ref["r1"], by_ref["r2"]], "no such drink", "404")
    # another destination's records in every state are not Partybroker's to count
    other = OutboxTable(journal, "ready2order")
    for ref in ("x1", "x2", "x3", "x4"):
        add_report(journal, ref, 100, destination="ready2order")
    x1, x2, x3, _ = other.due(100)
    other.done([x1], None, by_settling=False)
    other.gave_up([x2], "maybe applied")
    other.rejected([x3], "refused", "400")
    assert report_counts(journal) == ReportCounts(
        pending=3, sent_units=5, ambiguous=1, ambiguous_units=9, dropped=2
    )


def test_records_but_none_done_or_ambiguous_count_zero_units(journal: Journal) -> None:
    add_report(journal, "p1", 3)
    assert report_counts(journal) == ReportCounts(1, 0, 0, 0, 0)
