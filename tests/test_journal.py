"""The SQLite journal and outbox on real files: durability, migrations, corruption, outbox order."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.journal import MIGRATIONS, Journal, JournalDamaged, JournalError
from terminal.model import DeclineReason, SaleState
from terminal.ops.salvage import open_journal_salvaging
from tests.terminal_lab import ERIKA, MAX


def sale(
    journal: Journal, uid: str = MAX, amount: int = -250, *, offline: bool = False, **extra: object
) -> int:
    """Journal an espresso-and-product-3 sale of ``amount`` cents; returns its id."""
    record = journal.record_sale(
        token_id=uid,
        products=["espresso", 3],
        amount_cents=amount,
        description="Kaffee",
        tag="coffee",
        offline=offline,
        **extra,  # type: ignore[arg-type]
    )
    return record.id


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.open(tmp_path / "state" / "journal.sqlite3")
    yield j
    j.close()


def test_wal_full_sync_and_private_files(journal: Journal) -> None:
    db = journal._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    sale(journal)
    for path in journal.path.parent.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert stat.S_IMODE(journal.path.parent.stat().st_mode) == 0o700


def test_a_sale_is_durable_with_its_key_before_anything_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    j = Journal.open(path)
    record = j.record_sale(
        token_id=MAX,
        products=["espresso", 3],
        amount_cents=-250,
        description="Kaffee",
        tag=None,
        offline=True,
        reason="offline: accepted",
        balance_before=2000,
        attempting=True,
    )
    # another connection (another process after a power cut) sees it committed
    other = sqlite3.connect(path)
    row = other.execute("SELECT idempotency_key, state, maybe_sent, attempts FROM sales").fetchone()
    other.close()
    assert row == (record.idempotency_key, "pending", 1, 1)
    assert len(record.idempotency_key) >= 20
    assert set(record.idempotency_key) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    assert record.products == ("espresso", 3)
    j.close()
    reopened = Journal.open(path)
    again = reopened.sale_by_key(record.idempotency_key)
    assert again is not None and again.products == ("espresso", 3) and again.offline
    reopened.close()


def test_keys_are_unique_and_a_duplicate_key_is_refused(journal: Journal) -> None:
    keys = {journal.sale(sale(journal)).idempotency_key for _ in range(200)}  # type: ignore[union-attr]
    assert len(keys) == 200
    with pytest.raises(JournalError):
        sale(journal, key=next(iter(keys)))


def test_states_only_move_forward_from_pending(journal: Journal) -> None:
    a, b = sale(journal), sale(journal, ERIKA)
    journal.mark_done(a, 1750)
    journal.mark_rejected(a, "too late")  # a settled sale stays settled
    journal.mark_attempt(a, 1)
    journal.mark_rejected(b, "bad_product: 400: Item with id 3 does not exist")
    journal.mark_done(b, 0)
    done, rejected = journal.sale(a), journal.sale(b)
    assert done is not None and (done.state, done.balance_after, done.reason) == (SaleState.DONE, 1750, "")
    assert done.attempts == 0
    assert rejected is not None and rejected.state is SaleState.REJECTED
    assert rejected.reason.startswith("bad_product") and rejected.balance_after is None


def test_a_done_sale_keeps_no_retry_note_but_keeps_its_offline_decision(journal: Journal) -> None:
    online = sale(journal, MAX, attempting=True)
    offline = sale(journal, ERIKA, reason="offline: accepted (balance 500, 12 s old)")
    waited = sale(journal, ERIKA)  # retried: its decision's reason was replaced by a retry note already
    journal.schedule_retry(online, at=0.0, reason="waiting before reconciling")
    journal.schedule_retry(waited, at=0.0, reason="server unreachable: connection refused")
    for sale_id in (online, offline, waited):
        journal.mark_done(sale_id, 1750)
    reasons = [s.reason for s in journal.sales()]
    assert reasons == ["", "offline: accepted (balance 500, 12 s old)", ""]


def test_a_sale_charged_but_never_served_is_to_refund_until_a_person_closes_it(journal: Journal) -> None:
    unapproved = sale(journal, MAX, attempting=True, approved=False, dispense=True)
    undispensed = sale(journal, ERIKA, dispense=True)
    served = sale(journal, ERIKA, dispense=True)
    held = sale(journal, MAX, attempting=True)
    for sale_id in (unapproved, undispensed, served):
        journal.mark_done(sale_id, 1000)
    journal.hold(held, "unclear whether booked")
    keys = {s.id: s.idempotency_key for s in journal.sales()}
    journal.mark_dispensed(keys[served])
    assert [s.id for s in journal.to_refund()] == [unapproved, undispensed]
    st = journal.status()
    assert (st.done, st.to_refund, st.to_refund_cents, st.refunded, st.served_by_hand) == (3, 2, -500, 0, 0)

    assert not journal.resolve(keys[served], "refunded", "anna")  # its guest was served
    assert not journal.resolve(keys[held], "refunded", "anna")  # not booked (yet)
    assert not journal.resolve("t" + "x" * 24, "refunded", "anna")
    assert journal.resolve(keys[unapproved], "refunded", "anna")
    assert not journal.resolve(keys[unapproved], "served", "ben")  # closed once, by the first person
    assert journal.resolve(keys[undispensed], "served", "ben")
    with pytest.raises(ValueError):
        journal.resolve(keys[served], "forgotten", "anna")

    assert journal.to_refund() == []
    closed = journal.sale(unapproved)
    assert closed is not None and (closed.resolved, closed.resolved_by) == ("refunded", "anna")
    assert closed.as_json()["resolved"] == {"how": "refunded", "at": closed.resolved_at, "by": "anna"}
    assert closed.as_json()["to_refund"] is False and closed.resolved_at is not None
    st = journal.status()
    assert (st.done, st.to_refund, st.to_refund_cents, st.refunded, st.served_by_hand) == (3, 0, 0, 1, 1)


def test_due_sales_give_only_the_oldest_pending_sale_of_each_card(journal: Journal) -> None:
    m1, e1, m2, m3 = sale(journal, MAX), sale(journal, ERIKA), sale(journal, MAX), sale(journal, MAX)
    assert [s.id for s in journal.due_sales(now=0.0)] == [m1, e1]
    journal.mark_done(m1, 1750)
    assert [s.id for s in journal.due_sales(now=0.0)] == [e1, m2]
    journal.schedule_retry(m2, at=100.0, reason="timeout")
    assert [s.id for s in journal.due_sales(now=50.0)] == [e1]  # m3 waits behind m2
    assert [s.id for s in journal.due_sales(now=100.0)] == [e1, m2]
    journal.hold(m2, "unclear")
    assert [s.id for s in journal.due_sales(now=1e12)] == [e1]  # a held sale blocks its card
    held = journal.sale(m2)
    assert held is not None and held.hold and held.state is SaleState.PENDING
    assert [s.id for s in journal.pending_for_card(MAX)] == [m2, m3]


def test_offline_view_and_status_count_unconfirmed_money(journal: Journal) -> None:
    journal.remember_card(MAX, 2000, now=1000.0)
    sale(journal, MAX, -250)
    sale(journal, MAX, -300)
    done = sale(journal, ERIKA, -150)
    journal.mark_done(done, 350)
    rejected = sale(journal, ERIKA, -100)
    journal.mark_rejected(rejected, "unknown_card")
    journal.record_decline(
        token_id=ERIKA, products=[1], amount_cents=-250, description="d", reason=DeclineReason.OFFLINE
    )
    view = journal.offline_view(MAX, now=1060.0)
    assert (view.last_balance, view.balance_age_s) == (2000, 60.0)
    assert (view.card_unconfirmed_cents, view.total_unconfirmed_cents, view.unconfirmed_count) == (
        550,
        550,
        2,
    )
    assert view.denied_reason is None
    journal.deny_card(ERIKA, "unknown_card")
    erika = journal.offline_view(ERIKA, now=1000.0)
    assert erika.denied_reason == "unknown_card" and erika.card_unconfirmed_cents == 0
    assert journal.denied_reason(ERIKA) == "unknown_card" and journal.denied_cards() == {"unknown_card": 1}
    journal.remember_card(ERIKA, 350, now=1000.0)  # the server answered for the card: the denial ends
    assert journal.offline_view(ERIKA, now=1000.0).denied_reason is None
    assert journal.denied_reason(ERIKA) is None and journal.denied_cards() == {}
    never = journal.offline_view("DEADBEEF", now=0.0)
    assert never.last_balance is None and never.balance_age_s is None
    status = journal.status()
    assert (status.pending, status.done, status.rejected, status.declined) == (2, 1, 1, 1)
    assert (status.pending_cents, status.rejected_cents) == (-550, -100)
    declined = list(journal.sales([SaleState.DECLINED]))
    assert [(s.reason, s.state) for s in declined] == [("offline", SaleState.DECLINED)]


def test_the_cache_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    j = Journal.open(path)
    j.cache_put("terminal_info", {"products": [{"id": 1, "price": 250}]})
    j.cache_put("terminal_info", {"products": [{"id": 2, "price": 300}]})
    j.close()
    j = Journal.open(path)
    cached = j.cache_get("terminal_info")
    assert cached is not None and cached[0] == {"products": [{"id": 2, "price": 300}]}
    assert j.cache_get("nothing") is None
    j.close()


def test_an_old_schema_is_migrated_and_a_newer_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    sqlite3.connect(path).close()  # version 0: an empty database
    j = Journal.open(path)
    assert j._db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    sale(j)
    j.close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(JournalError, match="newer than this taptill knows"):
        Journal.open(path)
    assert path.exists()  # refused, never replaced


def test_a_garbage_file_is_moved_aside_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    garbage = b"this is not a database at all\n" * 100
    path.write_bytes(garbage)
    with pytest.raises(JournalDamaged, match="file is not a database"):
        Journal.open(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.sqlite3"], "Journal.open moves nothing"
    j = open_journal_salvaging(path)  # what `taptill run` does: nothing salvageable, a new journal
    sale(j)
    j.close()
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == garbage


def test_damaged_index_pages_are_found_and_every_sale_salvaged(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    j = Journal.open(path)
    keys = [j.sale(sale(j)).idempotency_key for _ in range(300)]  # type: ignore[union-attr]
    j._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    j.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[2 * page : 4 * page] = b"\xa5" * (2 * page)  # pages 3 and 4: the roots of two indexes
    path.write_bytes(bytes(data))
    damaged = bytes(data)
    with pytest.raises(JournalDamaged):
        Journal.open(path)
    assert path.read_bytes() == damaged
    fresh = open_journal_salvaging(path)
    try:
        # The table itself was intact: SQLite gives every sale back, with its key, into a sound journal.
        assert [s.idempotency_key for s in fresh.sales()] == keys
        assert fresh._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        fresh.close()
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged


def test_denials_an_older_taptill_wrote_for_a_product_or_the_server_are_lifted_by_migration(
    tmp_path: Path,
) -> None:
    """Before schema 14 every offline rejection denied the card (an item in no quota locked guests out):
    migrating keeps only the denials about the card itself; a read-only command counts the same."""
    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path)
    for version, script in enumerate(MIGRATIONS[:13]):
        db.executescript(script)
        db.execute(f"PRAGMA user_version = {version + 1}")
    denials = {
        "A1": "bad_product",
        "A2": "server_trouble",
        "A3": "permission",
        "A4": "unknown_card",
        "A5": "insufficient_balance",
    }
    db.executemany("INSERT INTO cards (token_id, denied_reason) VALUES (?, ?)", denials.items())
    db.execute("INSERT INTO cards (token_id, balance_cents, seen_at) VALUES ('A6', 500, 1.0)")
    db.commit()
    db.close()
    read_only = Journal.open_read_only(path)
    try:
        assert read_only.denied_cards() == {"insufficient_balance": 1, "unknown_card": 1}
    finally:
        read_only.close()
    journal = Journal.open(path)
    try:
        assert {uid: journal.denied_reason(uid) for uid in [*denials, "A6"]} == {
            "A1": None,
            "A2": None,
            "A3": None,
            "A4": "unknown_card",
            "A5": "insufficient_balance",
            "A6": None,
        }
        assert journal.offline_view("A6", 1.0).last_balance == 500
    finally:
        journal.close()


def test_booked_products_are_those_of_done_sales_whatever_their_ids_type(journal: Journal) -> None:
    booked = sale(journal)  # products "espresso" and 3
    journal.mark_done(booked, 1750)
    journal.mark_rejected(sale(journal), "bad_product: 500")
    journal.record_sale(
        token_id=MAX, products=[7], amount_cents=-100, description="d", tag=None, offline=False
    )  # pending: not booked (yet)
    assert journal.booked_products(["3", "espresso", "7", "9"]) == {"3", "espresso"}
    assert journal.booked_products([]) == set()


@pytest.mark.parametrize("unset", [False, True], ids=["every-field-set", "every-optional-field-unset"])
def test_every_field_of_a_sale_reads_back_as_written(tmp_path: Path, unset: bool) -> None:
    """Each column reaches its own field with its own type (a reader mixing up two columns, or turning a
    missing value into 0 or "None", would hand the outbox, the screens and the reports a wrong sale)."""
    journal = Journal.open(tmp_path / "j.sqlite3")
    try:
        sale = journal.record_sale(
            token_id=ERIKA,
            products=["latte", 7],
            amount_cents=-390,
            description="Latte",
            tag=None if unset else "coffee",
            offline=not unset,
            operator=None if unset else "olga",
        )
        values = (
            {
                "state": "pending",
                "reason": "",
                "balance_before": None,
                "balance_after": None,
                "maybe_sent": 0,
                "hold": 0,
                "attempts": 0,
                "next_attempt_at": 0.0,
                "attempted_at": None,
                "last_status": None,
                "server_errors": 0,
                "dispensed": None,
                "approved": 0,
                "resolved": None,
                "resolved_at": None,
                "resolved_by": None,
            }
            if unset
            else {
                "state": "rejected",
                "reason": "why",
                "balance_before": 1200,
                "balance_after": 810,
                "maybe_sent": 1,
                "hold": 1,
                "attempts": 3,
                "next_attempt_at": 1.25e9,
                "attempted_at": 1.5e9,
                "last_status": 503,
                "server_errors": 2,
                "dispensed": 1,
                "approved": 1,
                "resolved": "refunded",
                "resolved_at": "2026-12-03T09:00:00.000+00:00",
                "resolved_by": "olga",
            }
        )
        columns = ", ".join(f"{name} = ?" for name in values)
        journal.execute_all([(f"UPDATE sales SET {columns} WHERE id = ?", (*values.values(), sale.id))])
        got = journal.sale(sale.id)
    finally:
        journal.close()
    assert got is not None
    assert (got.id, got.idempotency_key, got.token_id, got.products) == (
        sale.id,
        sale.idempotency_key,
        ERIKA,
        ("latte", 7),
    )
    assert (got.amount_cents, got.description, got.tag, got.offline, got.operator) == (
        (-390, "Latte", None, False, None) if unset else (-390, "Latte", "coffee", True, "olga")
    )
    assert (got.created_at, got.updated_at) == (sale.created_at, sale.updated_at)
    expected = {
        **values,
        "state": SaleState(str(values["state"])),
        "maybe_sent": bool(values["maybe_sent"]),
        "hold": bool(values["hold"]),
        "approved": bool(values["approved"]),
        "dispensed": None if values["dispensed"] is None else bool(values["dispensed"]),
    }
    assert {name: getattr(got, name) for name in values} == expected
    for name, value in expected.items():  # the type too: True == 1 and 1.0 == 1 would pass the above
        assert type(getattr(got, name)) is type(value), name
    assert got.pays_table is False
