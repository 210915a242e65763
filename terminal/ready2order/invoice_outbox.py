"""ready2order invoices as records of the one outbox: made with the sale's ``done``, counted for status.

A booked sale's invoice record is inserted in the same transaction that marks the sale done (the wallet's
store commits it with the sale: ``terminal/wallet/sale_store.py``), as a record of destination
``ready2order`` in the journal's ``outbox`` table whose ``ref`` is the sale's idempotency key, the
invoice's ``invoice_externalReferenceNumber``. So a sale is never booked without its invoice record, nor
the other way round; an offline sale gets its record when the wallet confirms it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from terminal.journal import Journal, SaleRecord
from terminal.model import Product
from terminal.outbox.table import insert_statement
from terminal.ready2order.config import Ready2OrderConfig
from terminal.ready2order.invoice import record_payload

DESTINATION = "ready2order"


class InvoiceOutbox:
    """Makes the invoice record of each booked sale, with the wallet's product list of the moment."""

    def __init__(self, cfg: Ready2OrderConfig, terminal: str, catalog: Sequence[Product] = ()) -> None:
        self.cfg = cfg
        self.terminal = terminal
        self.catalog: tuple[Product, ...] = tuple(catalog)

    def statements_for(self, sale: SaleRecord) -> list[tuple[str, Sequence[object]]]:
        """The INSERT of the sale's invoice record, to be committed with the sale's ``done``."""
        if sale.amount_cents == 0 or not sale.products:
            return []  # nothing was paid: no fiscal record
        payload = record_payload(sale, self.catalog, training=self.cfg.training, terminal=self.terminal)
        return [insert_statement(DESTINATION, sale.idempotency_key, payload, sale_id=sale.id)]


@dataclass(frozen=True)
class InvoiceCounts:
    mirrored: int  # done: an invoice exists (created, or found by its reference)
    pending: int
    held: int
    rejected: int
    maybe_sent: int  # pending records whose earlier attempt may have created an invoice


def invoice_counts(journal: Journal) -> InvoiceCounts:
    """For ``taptill status`` (works on a journal of any schema version this taptill knows)."""
    # SQL in lower case: mutmut's lower-casing of an upper-case query would be the same query (a mutant
    # no test can kill); its upper-casing changes the states, which tests catch.
    r = journal.query(
        "select coalesce(sum(state = 'done'), 0), coalesce(sum(state = 'pending'), 0),"
        " coalesce(sum(state = 'pending' and hold = 1), 0), coalesce(sum(state = 'rejected'), 0),"
        " coalesce(sum(state = 'pending' and maybe_sent = 1), 0) from outbox where destination = ?",
        (DESTINATION,),
    )[0]
    return InvoiceCounts(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]))
