"""A GetParty outcome as table mode's BillRead: the bill's amount, orders, entries and key, or the problem."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from terminal.brink.bill import amount_due
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
from terminal.brink.party import Entry, Order, Party, Payment
from terminal.brink.table_bill import bill_read
from terminal.journal import Journal
from terminal.screens.table import BillLine, BillProblem

DAY = date(2026, 11, 30)
PARTY = Party(
    60003,
    "Table 3",
    3,
    (
        Order(70301, 1, "Guest 1", False, 1770, None, entries=(Entry("item", 1, "Burger", 1350),)),
        Order(
            70302,
            2,
            "Guest 2",
            False,
            1105,
            None,
            payments=(Payment(1, 500, False, 1),),
            entries=(Entry("item", 2, "Salad", 875), Entry("item", 3, "Wine", 700, is_voided=True)),
        ),
        Order(70303, 3, "Guest 3", True, 1204, 0),
    ),
)


def test_a_party_found_is_its_open_orders_amount_and_key() -> None:
    read = bill_read(7, 3, PartyFound(PARTY), DAY, None)
    assert (read.token, read.table_id, read.problem, read.paid) == (7, 3, None, None)
    bill = read.bill
    assert bill is not None
    assert bill.amount_cents == 1770 + 1105 - 500
    assert [(o.order_id, o.due_cents) for o in bill.orders] == [(70301, 1770), (70302, 605)]
    assert bill.lines == (BillLine("Burger", 1350), BillLine("Salad", 875)), "voided lines are not listed"
    assert bill.key == amount_due(PARTY).key() == read.pay_key
    assert (bill.party_id, bill.business_date) == (60003, "2026-11-30")


def test_the_journal_says_whether_the_bill_was_paid_here(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    key = amount_due(PARTY).key()
    journal.record_sale(
        token_id="04DE4A7AB1E000",
        products=["eur10"],
        amount_cents=-2375,
        description="Restaurant",
        tag=None,
        offline=False,
        key=key,
    )
    read = bill_read(1, 3, PartyFound(PARTY), DAY, journal)
    assert (read.paid, read.pay_key) == ("pending", key)


@pytest.mark.parametrize(
    ("outcome", "problem"),
    [
        (NoParty("not found"), BillProblem.NO_PARTY),
        (PosUnavailable(3, "busy"), BillProblem.POS_UNAVAILABLE),
        (PosUnavailable(1, "unknown"), BillProblem.POS_UNAVAILABLE),
        (AccessDenied("denied"), BillProblem.ACCESS_DENIED),
        (AccessDenied("", status=401), BillProblem.ACCESS_DENIED),
        (InvalidRequest("bad table"), BillProblem.REFUSED),
        (Fault("s:Client", "boom"), BillProblem.REFUSED),
        (BillUnreadable("Price 24.995 is not whole cents"), BillProblem.UNREADABLE),
        (Unreachable("timeout"), BillProblem.UNREACHABLE),
    ],
)
def test_every_other_outcome_is_a_problem_with_its_detail(
    outcome: PartyOutcome, problem: BillProblem
) -> None:
    read = bill_read(1, 3, outcome, DAY, None)
    assert (read.bill, read.problem) == (None, problem)
    assert read.detail
