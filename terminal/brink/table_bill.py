"""A table's bill as table mode reads it: GetParty for the venue's business date, its amount due and key,
and what the journal already holds under that key (``BillRead``, the controller's event).

The party's outcome becomes a ``BillProblem`` where it cannot be paid (101 no party, 1/3 the POS busy,
4 access denied, 2 or a Fault refused, an amount not in whole cents, no answer); otherwise a ``TableBill``
with the open orders (``bill.amount_due``) and the entries the screen lists. Server text is printable
already (``parse.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

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
from terminal.journal import Journal
from terminal.screens.table import BillLine, BillProblem


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
            bill, detail = table_bill(due, day), "; ".join(due.problems)
            paid, key = journal.bill_payment(bill.key) if journal is not None else (None, bill.key)
            return BillRead(token, table_id, bill, detail=detail, paid=paid, pay_key=key)
        case NoParty(message):
            problem, detail = BillProblem.NO_PARTY, message or "no open party (101)"
        case PosUnavailable(code, message):
            problem, detail = BillProblem.POS_UNAVAILABLE, f"POS unavailable ({code}): {message}"
        case AccessDenied(message, status):
            said = f"HTTP {status}" if status is not None else "ResultCode 4"
            fix = "check [brink] access_token_file and location_token_file"
            problem, detail = BillProblem.ACCESS_DENIED, f"access denied ({said}: {message}); {fix}"
        case InvalidRequest(message):
            problem, detail = BillProblem.REFUSED, f"invalid request (2): {message}"
        case Fault(code, text):
            problem, detail = BillProblem.REFUSED, f"SOAP fault {code}: {text}"
        case BillUnreadable(reason):
            problem, detail = BillProblem.UNREADABLE, reason
        case Unreachable(reason):
            problem, detail = BillProblem.UNREACHABLE, reason
    return BillRead(token, table_id, None, problem, detail)


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
