"""The journal's sales in a period and states, read with sqlite-utils over a read-only connection."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from terminal.journal import SALE_COLUMNS, Journal, SaleRecord, sale_from_row
from terminal.model import SaleState
from terminal.report.period import Period


def sales_in(journal: Journal, period: Period, states: Sequence[SaleState] = ()) -> Iterator[SaleRecord]:
    """The sales journaled (``created_at``) in ``period`` and, if given, in one of ``states``, oldest
    first. Reads only: the journal is opened with ``Journal.open_read_only`` by every caller."""
    import sqlite_utils  # not on the tap path: only the commands that read the journal load it

    db = sqlite_utils.Database(journal.connection, recursive_triggers=False, execute_plugins=False)
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
    rows = db.table("sales").rows_where(" AND ".join(where) or None, args, order_by="id", select=SALE_COLUMNS)
    for row in rows:
        yield sale_from_row(tuple(row.values()))
