"""The Partybroker sales outbox: a booked sale's drinks, kept in the journal until reported.

Partybroker has no idempotency key, so a report whose POST may have reached the party (timeout
after sending, 5xx) is never re-sent: reporting is at-most-once for ambiguous outcomes. A double
report would push the market price up for every guest; a lost one is bounded by the count of
ambiguous reports that ``taptill status`` shows. Reports that provably never reached the party
(connection refused, 429, 401) are retried.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from terminal.journal import Journal, SaleRecord
from terminal.model import ProductId
from terminal.partybroker.config import PartybrokerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingReport:
    id: int
    drink_key: str
    quantity: int


@dataclass(frozen=True)
class ReportCounts:
    pending: int
    sent_units: int
    ambiguous: int
    ambiguous_units: int
    dropped: int


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ReportOutbox:
    """Maps sold wallet products to Partybroker drinks and keeps the reports durable."""

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
        now = _now()
        return [
            (
                "INSERT INTO reports (sale_id, drink_key, quantity, state, created_at, updated_at)"
                " VALUES (?, ?, ?, 'pending', ?, ?)",
                (sale.id, key, qty, now, now),
            )
            for key, qty in quantities.items()
        ]

    def due(self, now: float | None = None, limit: int = 500) -> list[PendingReport]:
        """Pending reports, oldest first; ``now`` (wall clock) leaves out those noted for later. The sender
        passes None: it keeps its wait on the monotonic clock, so a clock step never parks a report."""
        rows = self.journal.query(
            "SELECT id, drink_key, quantity FROM reports WHERE state = 'pending'"
            " AND (? IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?",
            (now, now, limit),
        )
        return [PendingReport(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    def settle(self, reports: Sequence[PendingReport], state: str, reason: str = "") -> None:
        if not reports:
            return
        marks = ",".join("?" for _ in reports)
        self.journal.execute(
            f"UPDATE reports SET state = ?, reason = ?, updated_at = ? WHERE id IN ({marks})",
            (state, reason[:200], _now(), *(r.id for r in reports)),
        )

    def retry_at(self, reports: Sequence[PendingReport], at: float, reason: str) -> None:
        if not reports:
            return
        marks = ",".join("?" for _ in reports)
        self.journal.execute(
            f"UPDATE reports SET next_attempt_at = ?, reason = ?, updated_at = ? WHERE id IN ({marks})",
            (at, reason[:200], _now(), *(r.id for r in reports)),
        )


def report_counts(journal: Journal) -> ReportCounts:
    """For ``taptill status`` (works on a journal of any schema version this taptill knows)."""
    rows = journal.query(
        "SELECT COALESCE(SUM(state = 'pending'), 0),"
        " COALESCE(SUM(CASE WHEN state = 'sent' THEN quantity END), 0),"
        " COALESCE(SUM(state = 'ambiguous'), 0),"
        " COALESCE(SUM(CASE WHEN state = 'ambiguous' THEN quantity END), 0),"
        " COALESCE(SUM(state = 'dropped'), 0) FROM reports"
    )
    r = rows[0]
    return ReportCounts(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]))
