"""The journal's table bills: written with the sale that pays them, found again by the bill's key (the
next key after a payment that moved no money), listed per business day; a key booked elsewhere apart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from terminal.journal import MIGRATIONS, Journal, JournalError, table_bill_statement


def pay(journal: Journal, key: str, table: int = 2, day: str = "2026-11-30", amount: int = 2345) -> int:
    row = table_bill_statement(
        key=key,
        table_id=table,
        party_id=50001,
        business_date=day,
        orders=[(99001, 1, 1000), (99002, None, amount - 1000)],
        amount_cents=amount,
    )
    sale = journal.record_sale(
        token_id="04DE4A7AB1E000",
        products=["eur10"],
        amount_cents=-amount,
        description="Restaurant",
        tag=None,
        offline=False,
        key=key,
        also=[row],
    )
    return sale.id


def test_the_bill_is_journaled_with_its_sale_and_listed_for_its_business_day(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    sale_id = pay(journal, "bKEY")
    pay(journal, "bOTHER", table=5, day="2026-11-29", amount=1111)
    journal.mark_done(sale_id, 7655)
    (bill,) = journal.table_bills("2026-11-30")
    assert (bill.sale_key, bill.table_id, bill.amount_cents, bill.state) == ("bKEY", 2, 2345, "done")
    assert bill.orders == (
        {"order_id": 99001, "number": 1, "due_cents": 1000},
        {"order_id": 99002, "number": None, "due_cents": 1345},
    )
    assert [b.table_id for b in journal.table_bills()] == [2, 5]


def test_a_bill_row_is_never_written_without_its_sale(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    pay(journal, "bKEY")
    with pytest.raises(JournalError):
        pay(journal, "bKEY")  # the same key again: neither the sale nor its bill row
    assert len(journal.table_bills()) == 1 and len(list(journal.sales())) == 1


def test_the_key_of_a_bill_paid_pending_or_tried_before(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    assert journal.bill_payment("bKEY") == (None, "bKEY")
    first = pay(journal, "bKEY")
    assert journal.bill_payment("bKEY") == ("pending", "bKEY")
    journal.mark_rejected(first, "server_trouble: never approved")
    assert journal.bill_payment("bKEY") == (None, "bKEY-2"), "no money moved: another card may pay"
    second = pay(journal, "bKEY-2")
    journal.mark_done(second, 100)
    assert journal.bill_payment("bKEY") == ("done", "bKEY-2")


def test_a_key_booked_elsewhere_is_done_but_not_counted_as_this_terminals_sale(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    ours, theirs = pay(journal, "bOURS"), pay(journal, "bTHEIRS", table=3)
    journal.mark_done(ours, 100)
    journal.mark_done(theirs, 100)
    journal.mark_booked_elsewhere(theirs, "202")
    status = journal.status()
    assert (status.done, status.booked_elsewhere) == (1, 1)
    assert journal.bill_payment("bTHEIRS") == ("done", "bTHEIRS"), "still never paid twice"


def test_an_older_journal_gains_the_table_bills_table(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    conn = sqlite3.connect(path)
    for n, script in enumerate(MIGRATIONS[:-1]):
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version = {n + 1}")
    conn.commit()
    conn.close()
    journal = Journal.open(path)
    pay(journal, "bKEY")
    assert journal.table_bills()[0].sale_key == "bKEY"


@pytest.mark.parametrize("with_bill", [True, False])
def test_the_sale_record_sale_returns_is_the_row_the_journal_holds(tmp_path: Path, with_bill: bool) -> None:
    """The bill's row is written after the sale it refers to, where the INSERT's RETURNING cannot see it:
    the record handed back must still say it pays a table (it once said it did not)."""
    journal = Journal.open(tmp_path / "j.sqlite3")
    try:
        row = table_bill_statement(
            key="bKEY",
            table_id=2,
            party_id=50001,
            business_date="2026-11-30",
            orders=[(99001, 1, 2345)],
            amount_cents=2345,
        )
        seen = ("INSERT INTO cards (token_id, balance_cents, seen_at) VALUES ('04AA', 100, 1.0)", ())
        sale = journal.record_sale(
            token_id="04DE4A7AB1E000",
            products=["eur10", 3],
            amount_cents=-2345,
            description="Restaurant",
            tag=None,
            offline=False,
            key="bKEY",
            also=[row] if with_bill else [seen],
            attempting=True,
            attempted_at=1.5e9,
            dispense=True,
            approved=False,
            goods=["beer"],
        )
        assert sale.pays_table is with_bill
        assert sale == journal.sale(sale.id)
    finally:
        journal.close()
