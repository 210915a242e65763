"""The ready2order destination's records in the ``outbox`` table, with what settling needs kept beside
them: when the first attempt went out (the search's date window must reach back to it) and, once done,
the invoice's id and number."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from terminal.journal import Journal
from terminal.outbox.table import REASON_MAX, OutboxRow, OutboxTable, rows
from terminal.ready2order.invoice_outbox import DESTINATION


@dataclass(frozen=True)
class Receipt:
    """The invoice a record became (created, or found by its reference)."""

    invoice_id: int
    number: str
    total: Decimal
    found: bool = False  # found by searching, after an attempt whose answer was lost

    def describe(self) -> str:
        how = "found by its reference" if self.found else "created"
        return f"invoice {self.number} (id {self.invoice_id}) {how}"


@dataclass(frozen=True)
class AttemptTime:
    """When an attempt goes out (epoch seconds): the earlier of this machine's clock and the server's, so a
    clock that is behind or ahead cannot move the search's window past the invoice."""

    earliest: float


def first_attempt_at(record: OutboxRow) -> float | None:
    """Epoch seconds of the record's first attempt, as ``begin`` noted it (None: never attempted)."""
    value = record.payload.get("first_attempt_at")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class InvoiceTable(OutboxTable):
    """The OutboxStore of ready2order invoice records."""

    def __init__(self, journal: Journal) -> None:
        super().__init__(journal, DESTINATION)

    def begin(self, records: Sequence[OutboxRow], basis: object) -> None:
        at = basis.earliest if isinstance(basis, AttemptTime) else datetime.now(UTC).timestamp()
        self._update(
            records,
            "maybe_sent = 1, attempts = attempts + 1, payload = json_set(payload, '$.first_attempt_at',"
            " MIN(COALESCE(json_extract(payload, '$.first_attempt_at'), ?), ?))",
            (at, at),
        )

    def done(self, records: Sequence[OutboxRow], result: object, *, by_settling: bool) -> None:
        if not isinstance(result, Receipt):
            super().done(records, result, by_settling=by_settling)
            return
        self._update(
            records,
            "state = 'done', maybe_sent = 0, hold = 0, reason = ?,"
            " payload = json_set(payload, '$.invoice_id', ?, '$.invoice_number', ?)",
            (result.describe()[:REASON_MAX], result.invoice_id, result.number),
        )


def invoice_record(journal: Journal, key: str) -> OutboxRow | None:
    """The ready2order invoice record of the sale ``key`` (its ref), or None when it has none."""
    return next((r for r in rows(journal, DESTINATION) if r.ref == key), None)


def storno_advice(record: OutboxRow) -> str:
    """What a person does in ready2order about the invoice ``record`` once its sale was refunded: cancel
    (storno) the invoice this terminal mirrored, by number where it is known; one line."""
    number = record.payload.get("invoice_number")
    if record.state == "done" and number:
        return f"invoice {number} (reference {record.ref}) still stands: cancel it (storno) in ready2order"
    if record.state == "done":
        return f"the invoice with reference {record.ref} still stands: cancel it (storno) in ready2order"
    if record.state == "ambiguous":
        return (
            f"its ready2order invoice may have been created: search ready2order for reference {record.ref} "
            "and cancel (storno) it if it is there"
        )
    if record.state == "rejected":
        return "its ready2order invoice was rejected, so there is none to cancel"
    return (
        "its ready2order invoice is not mirrored yet: once taptill status counts it mirrored, cancel "
        f"(storno) it in ready2order (reference {record.ref})"
    )
