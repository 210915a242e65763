"""Partybroker reports: a booked sale's drinks as records of the one outbox, and their counts.

The reports of a sale are inserted with the sale's ``done`` (one transaction), as records of destination
``partybroker`` in the journal's ``outbox`` table (``terminal/outbox/table.py``); the Partybroker
destination (``destination.py``) delivers them at most once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from terminal.journal import Journal, SaleRecord
from terminal.model import ProductId
from terminal.outbox.table import insert_statement
from terminal.partybroker.config import PartybrokerConfig

log = logging.getLogger(__name__)

DESTINATION = "partybroker"


@dataclass(frozen=True)
class ReportCounts:
    pending: int
    sent_units: int
    ambiguous: int
    ambiguous_units: int
    dropped: int


class ReportOutbox:
    """Maps sold wallet products to Partybroker drinks and makes their outbox records."""

    def __init__(self, journal: Journal, cfg: PartybrokerConfig) -> None:
        self.journal = journal
        self._key_for: dict[str, str] = {}
        for key, mapping in cfg.drinks.items():
            self._key_for[key] = key
            for step in mapping.ladder:  # a ladder step is sold as the drink it prices
                self._key_for[str(step)] = key
        self._unmapped_logged: set[str] = set()

    def drink_key(self, product_id: ProductId) -> str | None:
        return self._key_for.get(str(product_id))

    def statements_for(self, sale: SaleRecord) -> list[tuple[str, Sequence[object]]]:
        """INSERTs of the sale's reports, to be committed together with the sale's ``done``."""
        if sale.amount_cents >= 0:
            return []  # top-ups sell no drinks
        quantities: dict[str, int] = {}
        for pid in sale.products:
            key = self.drink_key(pid)
            if key is None:
                if str(pid) not in self._unmapped_logged:
                    self._unmapped_logged.add(str(pid))
                    log.warning(
                        "product %s has no [partybroker.drinks] entry: its sales are not reported", pid
                    )
                continue
            quantities[key] = quantities.get(key, 0) + 1
        return [
            insert_statement(
                DESTINATION,
                f"{sale.idempotency_key}/{key}",
                {"drink_key": key, "quantity": qty},
                sale_id=sale.id,
            )
            for key, qty in quantities.items()
        ]


def report_counts(journal: Journal) -> ReportCounts:
    """For ``taptill status`` (works on a journal of any schema version this taptill knows)."""
    # SQL in lower case: mutmut's lower-casing of an upper-case query would be the same query (a mutant
    # no test can kill); its upper-casing changes the states and the JSON path, which tests catch.
    quantity = "cast(json_extract(payload, '$.quantity') as integer)"
    rows = journal.query(
        "select coalesce(sum(state = 'pending'), 0),"
        f" coalesce(sum(case when state = 'done' then {quantity} end), 0),"
        " coalesce(sum(state = 'ambiguous'), 0),"
        f" coalesce(sum(case when state = 'ambiguous' then {quantity} end), 0),"
        " coalesce(sum(state = 'rejected'), 0) from outbox where destination = ?",
        (DESTINATION,),
    )
    r = rows[0]
    return ReportCounts(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]))
