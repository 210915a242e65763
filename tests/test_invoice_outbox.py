"""InvoiceOutbox and invoice_counts on a real SQLite journal: the invoice record a booked sale's ``done``
commits (ref, sale, the payload from the catalog, training mode and terminal name), which sales get none,
and the counts ``taptill status`` prints for each state."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from terminal.journal import Journal, SaleRecord
from terminal.model import Product, ProductId
from terminal.outbox.table import OutboxRow, OutboxTable, insert_statement, rows
from terminal.ready2order.config import Ready2OrderConfig
from terminal.ready2order.invoice_outbox import DESTINATION, InvoiceCounts, InvoiceOutbox, invoice_counts
from tests.terminal_lab import journal_sale

CATALOG = [Product("espresso", "Espresso", 250), Product("cappuccino", "Cappuccino", 320)]


def outbox_of(*, training: bool) -> InvoiceOutbox:
    cfg = Ready2OrderConfig(account_token_file=None, payment_method_id=3, user_id=5678, training=training)
    return InvoiceOutbox(cfg, "Bar 1", CATALOG)


def sale(
    journal: Journal, products: Sequence[ProductId], amount_cents: int, operator: str | None = None
) -> SaleRecord:
    return journal_sale(journal, products, amount_cents, operator=operator)


def book(journal: Journal, outbox: InvoiceOutbox, record: SaleRecord) -> list[OutboxRow]:
    """Marks the sale done with its invoice record, as the wallet's store does; the sale's records."""
    journal.mark_done(record.id, 1000, also=outbox.statements_for(record))
    return [r for r in rows(journal, DESTINATION) if r.sale_id == record.id]


# --- which sales get an invoice record, and what it holds -------------------------------------------------


@pytest.mark.parametrize("training", [True, False], ids=["training", "fiscal"])
def test_a_debit_gets_one_record_priced_from_the_catalog(journal: Journal, training: bool) -> None:
    record = sale(journal, ["espresso", "cappuccino", "espresso"], -820)
    (invoice,) = book(journal, outbox_of(training=training), record)
    assert (invoice.destination, invoice.ref, invoice.sale_id, invoice.state) == (
        DESTINATION,
        record.idempotency_key,
        record.id,
        "pending",
    )
    assert invoice.payload == {
        "kind": "sale",
        "lines": [
            {"product": "espresso", "name": "Espresso", "quantity": 2, "unit_cents": 250},
            {"product": "cappuccino", "name": "Cappuccino", "quantity": 1, "unit_cents": 320},
        ],
        "total_cents": 820,
        "sold_at": record.created_at,
        "training": training,
        "terminal": "Bar 1",
    }


def test_a_top_up_gets_its_record_naming_the_operator(journal: Journal) -> None:
    record = sale(journal, ["topup_10"], 1000, operator="Erika")
    (invoice,) = book(journal, outbox_of(training=False), record)
    assert invoice.ref == record.idempotency_key
    assert invoice.payload == {
        "kind": "topup",
        "lines": [{"product": "topup_10", "name": "topup_10", "quantity": 1, "unit_cents": 1000}],
        "total_cents": 1000,
        "sold_at": record.created_at,
        "training": False,
        "terminal": "Bar 1",
        "operator": "Erika",
    }


@pytest.mark.parametrize("amount_cents", [-1, 1])
def test_a_sale_of_one_cent_either_way_gets_its_record(journal: Journal, amount_cents: int) -> None:
    record = sale(journal, ["espresso"], amount_cents)
    (invoice,) = book(journal, outbox_of(training=False), record)
    assert (invoice.payload["total_cents"], invoice.payload["lines"][0]["unit_cents"]) == (1, 1)


@pytest.mark.parametrize(
    ("products", "amount_cents"),
    [(["espresso"], 0), ([], -250), ([], 1000), ([], 0)],
    ids=["nothing-paid", "debit-of-no-product", "top-up-of-no-product", "neither"],
)
def test_a_sale_with_nothing_paid_or_no_product_gets_no_record(
    journal: Journal, products: list[ProductId], amount_cents: int
) -> None:
    record = sale(journal, products, amount_cents)
    assert outbox_of(training=False).statements_for(record) == []
    assert book(journal, outbox_of(training=False), record) == []


# --- the counts `taptill status` prints -------------------------------------------------------------------


def add_invoice(journal: Journal, ref: str, destination: str = DESTINATION) -> None:
    journal.execute(*insert_statement(destination, ref, {"kind": "sale"}))


def test_an_empty_journal_counts_nothing(journal: Journal) -> None:
    assert invoice_counts(journal) == InvoiceCounts(0, 0, 0, 0, 0)


def test_the_counts_of_each_state(journal: Journal) -> None:
    for destination in (DESTINATION, "partybroker"):  # the other destination's records are not counted
        table = OutboxTable(journal, destination)
        for i in range(13):
            add_invoice(journal, f"i{i}", destination)
        r = table.due(100)
        table.done(r[0:1], "found by its reference", by_settling=True)  # mirrored: 1
        table.rejected(r[1:6], "no such product", "400")  # rejected: 5
        table.begin(r[6:9], None)  # pending, maybe sent: 3 (one of them held)
        table.hold(r[8:10], "the total differs")  # pending, held: 2
        # ambiguous: maybe sent and held, yet neither pending nor held for status
        table.begin(r[12:13], None)
        table.hold(r[12:13], "timed out")
        table.gave_up(r[12:13], "maybe applied")
    # pending: 6 (i6 … i11)
    assert invoice_counts(journal) == InvoiceCounts(mirrored=1, pending=6, held=2, rejected=5, maybe_sent=3)


def test_held_and_maybe_sent_are_counted_among_pending_only(journal: Journal) -> None:
    table = OutboxTable(journal, DESTINATION)
    add_invoice(journal, "i0")
    table.begin(table.due(1), None)
    assert invoice_counts(journal) == InvoiceCounts(0, 1, 0, 0, 1)
    table.hold(table.due(1), "the total differs")
    assert invoice_counts(journal) == InvoiceCounts(0, 1, 1, 0, 1)
