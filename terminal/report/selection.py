"""The journal's sales in a period and states, read with sqlite-utils over a read-only connection."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from terminal.journal import SALE_COLUMNS, Journal, SaleRecord, sale_from_row
from terminal.model import SaleState
from terminal.report.period import Period


# When the wallet booked a done sale, as the journal knows it: ``attempted_at``, the wall clock (epoch
# seconds) when its latest request went out. pretix books a transaction when that request arrives, and
# dates it so; once the sale is done nothing writes the column again (unlike ``updated_at``, which
# ``taptill settle`` and a "booked elsewhere" note move later, and the time it was confirmed, which for a
# sale held and settled by hand is when a person looked). A sale journaled before the column existed
# (schema 3) has none: its ``created_at`` stands in, compared as the journal writes it.
def _booked(op: str) -> str:
    return f"CASE WHEN attempted_at IS NULL THEN created_at {op} ? ELSE attempted_at {op} ? END"


def sales_in(journal: Journal, period: Period, states: Sequence[SaleState] = ()) -> Iterator[SaleRecord]:
    """The sales journaled (``created_at``) in ``period`` and, if given, in one of ``states``, oldest
    first. Reads only: the journal is opened with ``Journal.open_read_only`` by every caller."""
    since, until = period.bounds()
    where: list[str] = []
    args: list[object] = []
    if since is not None:
        where.append("created_at >= ?")
        args.append(since)
    if until is not None:
        where.append("created_at < ?")
        args.append(until)
    if states:
        where.append(f"state IN ({', '.join('?' for _ in states)})")
        args.extend(str(s) for s in states)
    return _rows(journal, where, args)


def sales_booked_in(journal: Journal, period: Period) -> Iterator[SaleRecord]:
    """The sales the wallet booked (done) in ``period``, by when it booked them (``_booked``), not when
    they were journaled: an offline tap at 23:58 delivered at 00:03 is booked the next day, as pretix shows
    it. Oldest journaled first; reads only, as ``sales_in``."""
    (since, until), (since_s, until_s) = period.bounds(), period.epoch_bounds()
    where = ["state = 'done'"]
    args: list[object] = []
    if since is not None:
        where.append(_booked(">="))
        args += [since, since_s]
    if until is not None:
        where.append(_booked("<"))
        args += [until, until_s]
    return _rows(journal, where, args)


def _rows(journal: Journal, where: list[str], args: list[object]) -> Iterator[SaleRecord]:
    import sqlite_utils  # not on the tap path: only the commands that read the journal load it

    db = sqlite_utils.Database(journal.connection, recursive_triggers=False, execute_plugins=False)
    rows = db.table("sales").rows_where(" AND ".join(where) or None, args, order_by="id", select=SALE_COLUMNS)
    for row in rows:
        yield sale_from_row(tuple(row.values()))
