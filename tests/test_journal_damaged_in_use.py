"""A journal damaged while the terminal has it open: every method says so as the journal's own error,
never a bare sqlite3 one (a damaged page read at a tap was once taken for a wallet server fault), and the
journal remembers the first damage, which the device loop stops the terminal for."""

from __future__ import annotations

import inspect
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from terminal.journal import RUNNING_DAMAGE_FIX, Journal, JournalDamaged, JournalError, journal_moved
from terminal.model import DeclineReason
from terminal.service.boot_clock import Moment
from tests.journal_damage import fill_journal, overwrite_pages
from tests.terminal_lab import MAX

CALLS: dict[str, Callable[[Journal], object]] = {
    "record_sale": lambda j: j.record_sale(
        token_id=MAX, products=["espresso"], amount_cents=-250, description="Kaffee", tag=None, offline=False
    ),
    "record_decline": lambda j: j.record_decline(
        token_id=MAX,
        products=["espresso"],
        amount_cents=-250,
        description="Kaffee",
        reason=DeclineReason.INSUFFICIENT_BALANCE,
    ),
    "sale": lambda j: j.sale(1),
    "bill_payment": lambda j: j.bill_payment("bKEY"),
    "table_bills": lambda j: j.table_bills(),
    "mark_booked_elsewhere": lambda j: j.mark_booked_elsewhere(1, "elsewhere"),
    "sale_by_key": lambda j: j.sale_by_key("tKEY"),
    "mark_attempt": lambda j: j.mark_attempt(1, 2000),
    "mark_not_sent": lambda j: j.mark_not_sent(1),
    "mark_approved": lambda j: j.mark_approved(1),
    "mark_dispensed": lambda j: j.mark_dispensed("tKEY"),
    "mark_server_error": lambda j: j.mark_server_error(1, 500),
    "count_server_error": lambda j: j.count_server_error(1),
    "mark_done": lambda j: j.mark_done(1, 1750),
    "execute": lambda j: j.execute("DELETE FROM cache"),
    "execute_all": lambda j: j.execute_all([("DELETE FROM cache", ())]),
    "query": lambda j: j.query("SELECT COUNT(*) FROM sales"),
    "mark_rejected": lambda j: j.mark_rejected(1, "bad_product: 400"),
    "mark_unsellable": lambda j: j.mark_unsellable([("3", "Mate")], "500 and not booked"),
    "clear_unsellable": lambda j: j.clear_unsellable(["3"]),
    "unsellable": lambda j: j.unsellable(),
    "booked_products": lambda j: j.booked_products(["espresso"]),
    "schedule_retry": lambda j: j.schedule_retry(1, 1.7e9, "later"),
    "hold": lambda j: j.hold(1, "unclear"),
    "settle_held": lambda j: j.settle_held("tKEY", booked=True),
    "resolve": lambda j: j.resolve("tKEY", "refunded", "olga"),
    "to_refund": lambda j: j.to_refund(),
    "due_sales": lambda j: j.due_sales(),
    "credited_by": lambda j: j.credited_by("olga", datetime(2026, 12, 3, tzinfo=UTC)),
    "pin_failures": lambda j: j.pin_failures(),
    "note_pin_failures": lambda j: j.note_pin_failures("olga", 1),
    "pending_for_card": lambda j: j.pending_for_card(MAX),
    "sales": lambda j: list(j.sales()),
    "status": lambda j: j.status(),
    "remember_card": lambda j: j.remember_card(MAX, 2000, Moment(1.7e9)),
    "deny_card": lambda j: j.deny_card(MAX, "unknown_card"),
    "denied_reason": lambda j: j.denied_reason(MAX),
    "denied_cards": lambda j: j.denied_cards(),
    "offline_view": lambda j: j.offline_view(MAX, Moment(1.7e9)),
    "unconfirmed_count": lambda j: j.unconfirmed_count(),
    "cache_put": lambda j: j.cache_put("terminal_info", {}),
    "cache_get": lambda j: j.cache_get("terminal_info"),
    "copy_to": lambda j: j.copy_to(j.path.with_name("copy.sqlite3")),
}


@pytest.fixture
def damaged(tmp_path: Path) -> Iterator[Journal]:
    """A journal open as a running terminal holds it, then every page but the schema's read back as
    noise (checkpointed first, as after a long night, so the pages are in the main file)."""
    path = tmp_path / "journal.sqlite3"
    fill_journal(path, 30, MAX)
    journal = Journal.open(path)
    journal.cache_put("storage_probe", {})  # in the -wal: the connection's cache holds good pages now
    # Checkpointed by another connection: the open one reads the file anew at its next transaction.
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    other.close()
    pages = path.stat().st_size // 4096
    assert pages >= 10
    overwrite_pages(path, list(range(2, pages + 1)))
    yield journal
    journal.close()


def test_every_public_method_of_the_journal_is_checked_here() -> None:
    public = {
        n for n, a in vars(Journal).items() if n.isascii() and not n.startswith("_") and inspect.isfunction(a)
    }
    assert public - {"close"} == set(CALLS), "a new Journal method: add it to CALLS"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_damaged_page_is_the_journals_damage_error_never_sqlites_own(damaged: Journal, name: str) -> None:
    with pytest.raises(JournalDamaged) as raised:
        CALLS[name](damaged)
    assert raised.value.problem == "database disk image is malformed"
    assert str(raised.value) == (
        f"journal {damaged.path} is damaged (database disk image is malformed); {RUNNING_DAMAGE_FIX}"
    )
    assert damaged.damaged is raised.value, "the journal remembers it: the device loop stops for it"


def test_the_first_damage_is_the_one_remembered(damaged: Journal) -> None:
    with pytest.raises(JournalDamaged) as first:
        damaged.status()
    with pytest.raises(JournalDamaged):
        damaged.cache_put("storage_probe", {})
    assert damaged.damaged is first.value


def test_an_error_that_is_not_damage_is_a_plain_journal_error_and_no_damage(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.sqlite3")
    journal.close()
    for call, verb in ((CALLS["sales"], "read"), (CALLS["cache_put"], "write")):
        with pytest.raises(JournalError) as raised:
            call(journal)
        assert type(raised.value) is JournalError
        assert str(raised.value) == f"journal {verb} failed: Cannot operate on a closed database."
    assert journal.damaged is None


# --- the journal's file moved under its connection, and the copy kept of it --------------------------------


def _open_with_a_sale(path: Path) -> Journal:
    journal = Journal.open(path)
    CALLS["record_sale"](journal)
    return journal


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ("removed", "removed"),
        ("renamed", "removed"),
        ("replaced", "replaced by another file"),
        ("wal removed", "left without its -wal (removed)"),
    ],
)
def test_the_journal_says_when_its_file_is_no_longer_at_its_path(tmp_path: Path, how: str, said: str) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = _open_with_a_sale(path)
    try:
        assert journal_moved(journal) is None
        if how == "removed":
            path.unlink()
        elif how == "renamed":
            path.rename(tmp_path / "journal.old")
        elif how == "replaced":
            path.unlink()
            path.write_text("not a journal\n")
        else:
            Path(f"{path}-wal").unlink()
        assert journal_moved(journal) == said
    finally:
        journal.close()


def test_a_journal_whose_file_is_unknown_is_never_taken_for_moved(tmp_path: Path) -> None:
    conn = sqlite3.connect(":memory:")
    journal = Journal(conn, tmp_path / "nowhere.sqlite3")
    assert journal.identity is None and journal_moved(journal) is None
    conn.close()


def test_a_copy_is_one_private_file_holding_what_the_wal_holds(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = _open_with_a_sale(path)
    copy = tmp_path / "copy.sqlite3"
    old_umask = os.umask(0)
    try:
        journal.copy_to(copy)  # the sale is in the -wal only: nothing was checkpointed
    finally:
        os.umask(old_umask)
        journal.close()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("copy")) == ["copy.sqlite3"]
    db = sqlite3.connect(f"file:{copy}?immutable=1", uri=True)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert db.execute("SELECT COUNT(*) FROM sales").fetchone()[0] == 1
    finally:
        db.close()
