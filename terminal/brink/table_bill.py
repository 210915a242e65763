"""A table's bill as table mode reads it: GetParty for the venue's business date, its amount due and key,
and what the journal already holds under that key (``BillRead``, the controller's event).

The party's outcome becomes a ``BillProblem`` where it cannot be paid (101 no party, 1/3 the POS busy,
4 access denied, 2 or a Fault refused, an amount not in whole cents, no answer); otherwise a ``TableBill``
with the open orders (``bill.amount_due``) and the entries the screen lists. Server text is printable
already (``parse.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence

from terminal.brink.bill import Bill, amount_due
from terminal.brink.business_date import business_date
from terminal.brink.client import BrinkClient
from terminal.brink.outcomes import (
    AccessDenied,
    BillUnreadable,
    Fault,
    InvalidRequest,
    NoParty,
    PartyFound,
    PartyOutcome,
    PosUnavailable,
    Unreachable,
)
from terminal.events import BillOrder, BillRead, TableBill
from terminal.journal import Journal, JournalError
from terminal.screens.table import BillLine, BillProblem

log = logging.getLogger(__name__)

# What `taptill status` shows of the bills read: {table id: {"business_date", "problems": [lines]}}, the
# tables whose last read counted something as 0 (an order with more paid than owed)
NOTES_CACHE_KEY = "brink_bill_notes"


def table_bill(bill: Bill, day: dt.date) -> TableBill:
    """The controller's view of ``bill``: its key, amount, open orders and the entries to list."""
    return TableBill(
        key=bill.key(),
        table_id=bill.table_id,
        party_id=bill.party_id,
        business_date=day.isoformat(),
        amount_cents=bill.total_cents,
        orders=tuple(BillOrder(o.order_id, o.number, o.due_cents) for o in bill.orders),
        lines=tuple(BillLine(e.description, e.price_cents) for o in bill.orders for e in o.entries),
    )


def bill_read(
    token: int, table_id: int, outcome: PartyOutcome, day: dt.date, journal: Journal | None
) -> BillRead:
    """``outcome`` of GetParty for ``table_id`` as the controller's BillRead; with a journal, what it holds
    of this bill (paid, being confirmed) and the key a new payment uses."""
    match outcome:
        case PartyFound(party):
            due = amount_due(party)
            if journal is not None:
                note_problems(journal, table_id, day, due.problems)
            bill, detail = table_bill(due, day), "; ".join(due.problems)
            paid, key = journal.bill_payment(bill.key) if journal is not None else (None, bill.key)
            return BillRead(token, table_id, bill, detail=detail, paid=paid, pay_key=key)
        case NoParty(message):
            problem, detail = BillProblem.NO_PARTY, message or "no open party (101)"
        case PosUnavailable(code, message):
            problem, detail = BillProblem.POS_UNAVAILABLE, f"POS unavailable ({code}): {message}"
        case AccessDenied() as denied:
            fix = "check [brink] access_token_file and location_token_file"
            problem, detail = BillProblem.ACCESS_DENIED, f"access denied ({denied.describe()}); {fix}"
        case InvalidRequest(message):
            problem, detail = BillProblem.REFUSED, f"invalid request (2): {message}"
        case Fault(code, text):
            problem, detail = BillProblem.REFUSED, f"SOAP fault {code}: {text}"
        case BillUnreadable(reason):
            problem, detail = BillProblem.UNREADABLE, reason
        case Unreachable(reason):
            problem, detail = BillProblem.UNREACHABLE, reason
    return BillRead(token, table_id, None, problem, detail)


def note_problems(journal: Journal, table_id: int, day: dt.date, problems: Sequence[str]) -> None:
    """What a read of ``table_id``'s bill counted as 0 (a negative due): logged at warning and kept for
    ``taptill status`` when it changes, forgotten once a read finds none. A bill read every refresh
    writes nothing while its notes stay the same."""
    cached = journal.cache_get(NOTES_CACHE_KEY)
    notes = dict(cached[0]) if cached is not None and isinstance(cached[0], dict) else {}
    now = {"business_date": day.isoformat(), "problems": list(problems)} if problems else None
    if notes.get(str(table_id)) == now:
        return
    for line in problems:
        log.warning("table %d on %s: %s; the rest of the bill can be paid", table_id, day.isoformat(), line)
    if now is None:
        notes.pop(str(table_id), None)
    else:
        notes[str(table_id)] = now
    try:
        journal.cache_put(NOTES_CACHE_KEY, notes)
    except JournalError as exc:  # informational: a full disk must not keep a bill from being paid
        log.error("cannot keep table %d's bill notes for status: %s", table_id, exc)


async def read_bill(
    client: BrinkClient,
    token: int,
    table_id: int,
    *,
    day_starts: dt.time,
    journal: Journal | None = None,
    now: Callable[[], dt.datetime] = dt.datetime.now,
    timeout: float | None = None,
) -> BillRead:
    """GetParty for ``table_id`` on the business date of the local wall time ``now()`` (``[brink]
    business_day_starts``), within ``timeout`` seconds (default the client's), as a BillRead."""
    day = business_date(now(), day_starts)
    outcome = await client.get_party(day, table_id, timeout=timeout)
    return bill_read(token, table_id, outcome, day, journal)
