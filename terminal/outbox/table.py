"""The journal's ``outbox`` table: the records of every destination but the wallet, and their state.

A record is inserted in the same transaction as whatever it reports (a Partybroker report with its sale's
``done``), so nothing is ever journaled without its record or the other way round. ``ref`` is the
record's reference, unique per destination (the sale's key and what it is for); ready2order will send it
as the invoice's external reference and search for it when settling. States: pending (held ones too),
done, rejected, ambiguous (maybe applied, never sent again: at most once).

SQLite reads keywords and column names in any case, so mutmut's upper- or lower-casing of SQL text is often
the same statement (a mutant no test can kill, issue 18): the lines of such text carry ``# pragma: no
mutate``. ``_held``'s conditions are in lower case instead: upper-casing their state is caught.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from terminal.journal import Journal

log = logging.getLogger(__name__)

REASON_MAX = 400  # a held reason is what staff do, whole: a POS payment's names its 36-character key thrice

_COLUMNS = (
    "id, destination, ref, sale_id, payload, state, reason, attempts, maybe_sent, hold, next_attempt_at, "
    "created_at, updated_at"
)


@dataclass(frozen=True)
class OutboxRow:
    """One record of the ``outbox`` table; ``payload`` is its JSON object ({} when it cannot be read)."""

    id: int
    destination: str
    ref: str
    sale_id: int | None
    payload: dict[str, Any]
    state: str
    reason: str
    attempts: int
    maybe_sent: bool
    hold: bool
    next_attempt_at: float
    created_at: str
    updated_at: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _payload(text: object) -> dict[str, Any]:
    try:
        value = json.loads(str(text))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _row(r: Sequence[Any]) -> OutboxRow:
    return OutboxRow(
        id=int(r[0]),
        destination=str(r[1]),
        ref=str(r[2]),
        sale_id=None if r[3] is None else int(r[3]),
        payload=_payload(r[4]),
        state=str(r[5]),
        reason=str(r[6]),
        attempts=int(r[7]),
        maybe_sent=bool(r[8]),
        hold=bool(r[9]),
        next_attempt_at=float(r[10]),
        created_at=str(r[11]),
        updated_at=str(r[12]),
    )


def insert_statement(
    destination: str, ref: str, payload: dict[str, Any], sale_id: int | None = None
) -> tuple[str, Sequence[object]]:
    """The INSERT of a new pending record, to commit together with what it reports."""
    now = _now()
    return (
        "INSERT INTO outbox (destination, ref, sale_id, payload, state,"  # pragma: no mutate
        " created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",  # pragma: no mutate
        (destination, ref, sale_id, json.dumps(payload, separators=(",", ":")), now, now),
    )


def rows(journal: Journal, destination: str | None = None, states: Sequence[str] = ()) -> list[OutboxRow]:
    """Records of ``destination`` (every one when None) in ``states`` (any when empty), oldest first."""
    in_states = f" AND state IN ({','.join('?' for _ in states)})" if states else ""
    found = journal.query(
        f"SELECT {_COLUMNS} FROM outbox WHERE (? IS NULL OR destination = ?){in_states} ORDER BY id",
        (destination, destination, *states),
    )
    return [_row(r) for r in found]


def _held(ref: str) -> tuple[str, object]:
    """The condition and parameter finding the held record a person names: ``#12`` is the record of id
    12, anything else (all digits too) a record's ref."""
    if ref.startswith("#") and ref[1:].isdigit():
        return "id = ? and state = 'pending' and hold = 1", int(ref[1:])
    return "ref = ? and state = 'pending' and hold = 1", ref


def settle_held(journal: Journal, ref: str, *, booked: bool) -> bool:
    """A person settled a held record (by its ref, or ``#id``): done, or sent again. True if one was held."""
    state, reason = (
        ("done", "settled by hand: applied") if booked else ("pending", "settled by hand: sending again")
    )
    where, key = _held(ref)
    count = journal.execute(
        "UPDATE outbox SET state = ?, hold = 0, maybe_sent = 0,"  # pragma: no mutate
        f" next_attempt_at = 0, reason = ?, updated_at = ? WHERE {where}",
        (state, reason, _now(), key),
    )
    return count == 1


def give_up_held(journal: Journal, ref: str, by: str) -> bool:
    """A person gave up a held record (by its ref, or ``#id``): what it stood for was refunded instead
    (a table's POS payment whose order was closed: the guest got the money back). It ends rejected, never
    sent. True if one was held."""
    where, key = _held(ref)
    count = journal.execute(
        "UPDATE outbox SET state = 'rejected', hold = 0, maybe_sent = 0,"  # pragma: no mutate
        f" reason = ?, updated_at = ? WHERE {where}",
        (f"given up by hand: refunded (by {by})"[:REASON_MAX], _now(), key),
    )
    return count == 1


class OutboxTable:
    """The OutboxStore of one destination's rows in the ``outbox`` table."""

    def __init__(self, journal: Journal, destination: str) -> None:
        self.journal = journal
        self.destination = destination

    def due(self, limit: int) -> Sequence[OutboxRow]:
        found = self.journal.query(
            f"SELECT {_COLUMNS} FROM outbox WHERE destination = ? AND state = 'pending' AND hold = 0"
            " ORDER BY id LIMIT ?",  # pragma: no mutate
            (self.destination, limit),
        )
        return [_row(r) for r in found]

    def _update(self, records: Sequence[OutboxRow], assignments: str, params: Sequence[object]) -> None:
        """One write (one fsync) for every record of a batch; only pending ones change."""
        if not records:
            return
        marks = ",".join("?" for _ in records)
        self.journal.execute(
            f"UPDATE outbox SET {assignments}, updated_at = ? WHERE id IN ({marks}) AND state = 'pending'",
            (*params, _now(), *(r.id for r in records)),
        )

    def begin(self, records: Sequence[OutboxRow], basis: object) -> None:
        self._update(records, "maybe_sent = 1, attempts = attempts + 1", ())  # pragma: no mutate

    def done(self, records: Sequence[OutboxRow], result: object, *, by_settling: bool) -> None:
        reason = result if isinstance(result, str) else ""
        self._update(records, "state = 'done', maybe_sent = 0, hold = 0, reason = ?", (reason[:REASON_MAX],))

    def rejected(self, records: Sequence[OutboxRow], reason: str, code: str) -> None:
        text = f"{code}: {reason}" if code else reason
        self._update(records, "state = 'rejected', maybe_sent = 0, reason = ?", (text[:REASON_MAX],))
        log.warning("%s: %d record(s) rejected: %s", self.destination, len(records), text)

    def not_sent(self, records: Sequence[OutboxRow]) -> None:
        self._update(records, "maybe_sent = 0", ())  # pragma: no mutate

    def server_error(self, records: Sequence[OutboxRow], status: int) -> None:
        self._update(records, "reason = ?", (f"the server answered {status}",))  # pragma: no mutate

    def note_retry(self, records: Sequence[OutboxRow], at_wall: float, reason: str) -> None:
        self._update(
            records,
            "next_attempt_at = ?, reason = ?",  # pragma: no mutate
            (at_wall, reason[:REASON_MAX]),
        )

    def hold(self, records: Sequence[OutboxRow], reason: str) -> None:
        self._update(records, "hold = 1, reason = ?", (reason[:REASON_MAX],))  # pragma: no mutate
        log.error("%s: %d record(s) held for a person: %s", self.destination, len(records), reason)

    def gave_up(self, records: Sequence[OutboxRow], reason: str) -> None:
        self._update(records, "state = 'ambiguous', reason = ?", (reason[:REASON_MAX],))
