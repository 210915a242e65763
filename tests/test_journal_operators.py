"""The journal's operator and bookkeeping records: PIN lockouts, shift credit, held sales, counts."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from terminal.journal import Journal, JournalError, JournalStatus, PinFailures, table_bill_statement
from terminal.model import SaleState
from terminal.service.boot_clock import Moment
from tests.terminal_lab import local_zone

CARD = "04A1B2C3D4E5F6"
OTHER_CARD = "04FFEEDDCCBBAA"
INVOICE = (
    "INSERT INTO outbox (destination, ref, sale_id, payload, state, created_at, updated_at)"
    " VALUES ('ready2order', ?, NULL, '{}', 'pending', 'x', 'x')"
)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.open(tmp_path / "state" / "journal.sqlite3")
    yield j
    j.close()


@pytest.fixture
def central_european_time() -> Iterator[None]:
    """The terminal's zone an hour ahead of UTC (a venue in Berlin in winter): a moment taken in the local
    zone instead of by its own offset shows as an hour's shift."""
    with local_zone("CET-1"):
        yield


def sell(
    journal: Journal,
    amount: int = -250,
    *,
    card: str = CARD,
    operator: str | None = None,
    approved: bool = True,
    key: str | None = None,
) -> int:
    return journal.record_sale(
        token_id=card,
        products=["espresso"],
        amount_cents=amount,
        description="Kaffee",
        tag=None,
        offline=False,
        operator=operator,
        approved=approved,
        key=key,
    ).id


def held(journal: Journal, key: str) -> int:
    """A sale whose request went out and whose effect is unclear: held for a person to reconcile."""
    sale_id = sell(journal, -480, key=key)
    journal.mark_attempt(sale_id, 2000, at=1_764_000_000.0)
    journal.schedule_retry(sale_id, 1_764_000_600.0, "waiting before reconciling")
    journal.hold(sale_id, "reconciliation failed twice")
    return sale_id


def record(journal: Journal, sale_id: int) -> dict[str, object]:
    sale = journal.sale(sale_id)
    assert sale is not None
    return dataclasses.asdict(sale)


def invoices(journal: Journal) -> list[str]:
    return [str(r[0]) for r in journal.query("SELECT ref FROM outbox ORDER BY id")]


# --- operator PINs ---------------------------------------------------------------------------------


def test_wrong_pins_count_per_operator_survive_a_reopen_and_a_right_pin_forgets_only_its_own(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal.open(path)
    assert journal.pin_failures() == {}
    journal.note_pin_failures("anna", 1)
    journal.note_pin_failures("anna", 2)
    journal.note_pin_failures("ben", 1)
    locked = Moment(1_764_000_000.25, "boot-a", 5_432.5)
    journal.note_pin_failures("carl", 3, locked)
    journal.close()

    # a restart (power cut, provoked crash) gives a guesser no fresh attempts
    journal = Journal.open(path)
    assert journal.pin_failures() == {
        "anna": PinFailures(2),
        "ben": PinFailures(1),
        "carl": PinFailures(3, locked),
    }
    journal.note_pin_failures("anna", 0)
    journal.note_pin_failures("carl", 0)
    journal.note_pin_failures("nobody", 0)
    assert journal.pin_failures() == {"ben": PinFailures(1)}
    journal.close()

    reader = Journal.open_read_only(path)  # `taptill status` lists the lockouts this way
    assert reader.pin_failures() == {"ben": PinFailures(1)}
    reader.close()


def test_a_lockout_keeps_its_moment_and_a_later_wrong_pin_replaces_it(journal: Journal) -> None:
    began = Moment(1_764_000_000.5, "0f3c-boot", 86_400.125)
    journal.note_pin_failures("anna", 5, began)
    journal.note_pin_failures("ben", 2)
    assert journal.pin_failures() == {"anna": PinFailures(5, began), "ben": PinFailures(2)}

    # the lockout ended; one more wrong PIN counts anew, without a lockout, and leaves ben alone
    journal.note_pin_failures("anna", 1)
    assert journal.pin_failures() == {"anna": PinFailures(1), "ben": PinFailures(2)}
    again = Moment(1_764_003_600.75, "1a2b-boot", 12.5)
    journal.note_pin_failures("anna", 5, again)
    assert journal.pin_failures()["anna"] == PinFailures(5, again)


@pytest.mark.parametrize(
    ("began", "read_back"),
    [
        # no boot id (the kernel did not tell): the boot-time clock means nothing after a restart
        (Moment(1_764_000_000.5), Moment(1_764_000_000.5, "", 0.0)),
        (Moment(1_764_000_000.5, "", 77.25), Moment(1_764_000_000.5, "", 0.0)),
        (Moment(1_764_000_000.5, "b00t", 77.25), Moment(1_764_000_000.5, "b00t", 77.25)),
    ],
)
def test_a_lockout_moment_reads_back_with_its_boot_clock_only_where_the_boot_is_known(
    tmp_path: Path, began: Moment, read_back: Moment
) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal.open(path)
    journal.note_pin_failures("anna", 4, began)
    journal.close()
    journal = Journal.open(path)
    assert journal.pin_failures() == {"anna": PinFailures(4, read_back)}
    journal.close()


# --- an operator's credit in a shift ------------------------------------------------------------


def test_credited_by_sums_an_operators_top_ups_since_a_moment_pending_or_booked(
    journal: Journal, central_european_time: None
) -> None:
    def at(sale_id: int, created_at: str) -> None:
        assert journal.execute("UPDATE sales SET created_at = ? WHERE id = ?", (created_at, sale_id)) == 1

    at(sell(journal, 1000, operator="anna"), "2026-12-02T23:30:00.000+00:00")  # 00:30 in Berlin
    at(sell(journal, 25, operator="anna"), "2026-12-02T23:00:00.000+00:00")  # Berlin midnight itself
    at(sell(journal, 999, operator="anna"), "2026-12-02T22:59:59.999+00:00")  # the shift before
    booked = sell(journal, 550, operator="anna")
    journal.mark_done(booked, 5550)
    at(booked, "2026-12-03T09:00:00.000+00:00")
    rejected = sell(journal, 300, operator="anna")
    journal.mark_rejected(rejected, "server refused")
    at(rejected, "2026-12-03T09:05:00.000+00:00")
    journal.record_decline(
        token_id=CARD,
        products=["eur7"],
        amount_cents=700,
        description="Aufladen",
        reason="operator anna: shift cap reached",
        operator="anna",
    )
    journal.execute("UPDATE sales SET created_at = '2026-12-03T09:10:00.000+00:00' WHERE state = 'declined'")
    at(sell(journal, -250, operator="anna"), "2026-12-03T09:15:00.000+00:00")  # a debit is no credit
    at(sell(journal, 2000, card=OTHER_CARD, operator="ben"), "2026-12-03T09:20:00.000+00:00")
    at(sell(journal, 400), "2026-12-03T09:25:00.000+00:00")  # no operator

    # the shift's start as the device loop takes it (local midnight): the journal keeps UTC, so it counts
    # by the instant, whatever the zone of the moment or of the terminal
    berlin_midnight = datetime(2026, 12, 3, tzinfo=timezone(timedelta(hours=1)))
    assert journal.credited_by("anna", berlin_midnight) == 1000 + 25 + 550
    assert journal.credited_by("anna", berlin_midnight.astimezone(UTC)) == 1575
    assert journal.credited_by("ben", berlin_midnight) == 2000
    assert journal.credited_by("anna", datetime(2026, 12, 2, tzinfo=UTC)) == 999 + 1575
    assert journal.credited_by("anna", datetime(2026, 12, 4, tzinfo=UTC)) == 0
    assert journal.credited_by("carla", berlin_midnight) == 0


# --- held sales settled by hand -----------------------------------------------------------------


def test_a_held_sale_settled_as_booked_is_done_with_its_invoice_in_the_same_write(journal: Journal) -> None:
    sale_id = held(journal, "tHELD")
    assert journal.settle_held("tHELD", booked=True, also=[(INVOICE, ("inv-tHELD",))]) is True
    sale = journal.sale(sale_id)
    assert sale is not None
    assert (sale.state, sale.hold, sale.maybe_sent, sale.reason) == (
        SaleState.DONE,
        False,
        False,
        "settled by hand: booked",
    )
    assert invoices(journal) == ["inv-tHELD"]
    # settled once: a second settle finds no held sale and writes nothing
    assert journal.settle_held("tHELD", booked=True, also=[(INVOICE, ("inv-again",))]) is False
    assert invoices(journal) == ["inv-tHELD"]
    assert journal.unconfirmed_count() == 0


def test_a_held_sale_settled_as_not_booked_is_sent_again_at_once_without_its_invoice(
    journal: Journal,
) -> None:
    sale_id = held(journal, "tHELD")
    assert journal.due_sales() == []
    assert journal.settle_held("tHELD", booked=False, also=[(INVOICE, ("inv-tHELD",))]) is True
    sale = journal.sale(sale_id)
    assert sale is not None
    assert (sale.state, sale.hold, sale.maybe_sent, sale.next_attempt_at, sale.reason) == (
        SaleState.PENDING,
        False,
        False,
        0.0,
        "settled by hand: not booked, sending again",
    )
    assert (sale.attempts, sale.balance_before) == (1, 2000)
    assert invoices(journal) == []  # nothing was booked, so nothing to invoice
    assert [s.id for s in journal.due_sales(now=1_764_000_000.0)] == [sale_id]


@pytest.mark.parametrize("booked", [True, False])
def test_only_a_held_sale_is_settled_any_other_key_changes_nothing(journal: Journal, booked: bool) -> None:
    waiting = sell(journal, key="tWAITING")  # pending, not held: the outbox still works on it
    done = sell(journal, key="tDONE")
    journal.mark_done(done, 1750)
    other_held = held(journal, "tOTHER")
    before = {i: record(journal, i) for i in (waiting, done, other_held)}
    for key in ("tWAITING", "tDONE", "tUNKNOWN"):
        assert journal.settle_held(key, booked=booked, also=[(INVOICE, (f"inv-{key}",))]) is False
    assert {i: record(journal, i) for i in (waiting, done, other_held)} == before
    assert invoices(journal) == []


def test_a_settle_whose_invoice_cannot_be_written_leaves_the_sale_held(journal: Journal) -> None:
    sale_id = held(journal, "tHELD")
    before = record(journal, sale_id)
    broken = ("INSERT INTO invoices (ref) VALUES (?)", ("inv-tHELD",))
    with pytest.raises(JournalError, match=r"^journal write failed: no such table: invoices$"):
        journal.settle_held("tHELD", booked=True, also=[(INVOICE, ("inv-tHELD",)), broken])
    assert record(journal, sale_id) == before
    assert invoices(journal) == []


# --- charged but never served: closed by a person -------------------------------------------------


def test_a_sale_charged_but_never_served_is_closed_once_refunded_or_served_by_hand(journal: Journal) -> None:
    refund, serve = sell(journal, -500, approved=False), sell(journal, -300, approved=False)
    fine = sell(journal, -200, approved=False)
    for sale_id in (refund, serve):
        journal.mark_done(sale_id, 1000)  # booked, but the guest never saw "approved"
    journal.mark_done(fine, 800, approved=True)
    keys = {i: str(record(journal, i)["idempotency_key"]) for i in (refund, serve, fine)}
    assert [s.id for s in journal.to_refund()] == [refund, serve]

    by = "staff-" + "x" * 150  # a name longer than the journal keeps
    log_row = ("INSERT INTO cache (key, value, stored_at) VALUES (?, '1', 0)", (f"closed-{keys[refund]}",))
    assert journal.resolve(keys[refund], "refunded", by, also=[log_row]) is True
    assert journal.resolve(keys[serve], "served", "max") is True
    assert journal.resolve(keys[fine], "refunded", "max") is False, "served at the tap: nothing to refund"
    refunded, served = journal.sale(refund), journal.sale(serve)
    assert refunded is not None and served is not None
    assert (refunded.resolved, refunded.resolved_by, refunded.to_refund) == ("refunded", by[:100], False)
    assert refunded.resolved_at is not None
    assert datetime.fromisoformat(refunded.resolved_at).utcoffset() == timedelta(0)
    assert (served.resolved, served.resolved_by) == ("served", "max")
    assert journal.cache_get(f"closed-{keys[refund]}") == (1, 0.0)
    # closed once: a second closing, either way, is refused and changes nothing
    before = record(journal, refund)
    assert journal.resolve(keys[refund], "served", "ben") is False
    assert journal.resolve(keys[refund], "refunded", "ben") is False
    assert record(journal, refund) == before
    assert journal.to_refund() == []


def test_a_paid_table_bill_may_be_refunded_but_never_served_by_hand(journal: Journal) -> None:
    bill = table_bill_statement(
        key="bTABLE",
        table_id=4,
        party_id=50001,
        business_date="2026-12-03",
        orders=[(99001, 1, 2345)],
        amount_cents=2345,
    )
    sale_id = journal.record_sale(
        token_id=CARD,
        products=["eur10"],
        amount_cents=-2345,
        description="Restaurant",
        tag=None,
        offline=False,
        key="bTABLE",
        also=[bill],
        approved=False,
    ).id
    journal.mark_done(sale_id, 100)
    assert journal.to_refund() == []  # the bill is paid: nothing for the guest to get back by itself
    assert journal.resolve("bTABLE", "served", "max") is False
    assert journal.resolve("bTABLE", "refunded", "max") is True
    (paid,) = journal.table_bills()
    assert paid.resolved == "refunded"


def test_a_resolution_is_refunded_or_served_and_nothing_else(journal: Journal) -> None:
    sale_id = sell(journal, approved=False)
    journal.mark_done(sale_id, 1000)
    key = str(record(journal, sale_id)["idempotency_key"])
    with pytest.raises(ValueError) as raised:
        journal.resolve(key, "forgotten", "max")
    assert str(raised.value) == "resolution 'forgotten' is none of ('refunded', 'served')"
    assert [s.id for s in journal.to_refund()] == [sale_id]


# --- approval, products the server cannot book, committed writes ---------------------------------


def test_mark_approved_approves_that_one_sale_and_nothing_more(journal: Journal) -> None:
    told, untold = sell(journal, approved=False), sell(journal, approved=False)
    before = {i: record(journal, i) for i in (told, untold)}
    assert before[told]["approved"] is False
    journal.mark_approved(told)
    assert record(journal, told) == {**before[told], "approved": True}
    assert record(journal, untold) == before[untold]
    journal.mark_approved(told)
    journal.mark_approved(999)
    assert record(journal, told) == {**before[told], "approved": True}
    assert record(journal, untold) == before[untold]
    # approved means delivered whatever it takes: a refusal afterwards is money not collected
    journal.mark_rejected(told, "server refused")
    journal.mark_rejected(untold, "server refused")
    assert (journal.status().rejected, journal.status().refused_at_tap) == (1, 1)


def test_unsellable_products_are_marked_listed_and_cleared_each_on_its_own(journal: Journal) -> None:
    assert journal.unsellable() == {}
    long_name, long_reason = "Weizen " + "w" * 150, "HTTP 409: " + "r" * 400
    journal.mark_unsellable([("7", long_name), ("12", "Cola")], long_reason)
    listed = journal.unsellable()
    since = listed["7"][2]
    assert listed == {
        "12": ("Cola", long_reason[:300], since),
        "7": (long_name[:100], long_reason[:300], since),
    }
    assert datetime.fromisoformat(since).utcoffset() == timedelta(0)

    # marked again: the newer reason, the first name and since
    journal.mark_unsellable([("7", "Weizen")], "HTTP 422: no quota")
    assert journal.unsellable()["7"] == (long_name[:100], "HTTP 422: no quota", since)

    assert journal.clear_unsellable([]) == 0
    assert journal.clear_unsellable(["12", "99"]) == 1
    assert list(journal.unsellable()) == ["7"]
    journal.mark_unsellable([("3", "Wasser")], "HTTP 409")
    assert journal.clear_unsellable({"3", "7", "12"}) == 2
    assert journal.unsellable() == {}


def test_execute_commits_one_write_and_returns_how_many_rows_it_changed(journal: Journal) -> None:
    for card in (CARD, CARD, OTHER_CARD):
        sell(journal, card=card)
    assert journal.execute("UPDATE sales SET tag = ? WHERE token_id = ?", ("bar-2", CARD)) == 2
    assert journal.execute("UPDATE sales SET tag = ? WHERE token_id = ?", ("bar-2", "04NONE")) == 0
    assert journal.execute("DELETE FROM sales WHERE tag IS NULL") == 1
    other = sqlite3.connect(journal.path)  # committed: another process sees it
    assert other.execute("SELECT token_id, tag FROM sales ORDER BY id").fetchall() == [
        (CARD, "bar-2"),
        (CARD, "bar-2"),
    ]
    other.close()


# --- counts -----------------------------------------------------------------------------------------


def test_status_counts_every_kind_of_sale_exactly(journal: Journal) -> None:
    assert journal.status() == JournalStatus(0, 0, 0, 0, 0, 0, 0, None)
    assert journal.unconfirmed_count() == 0

    waiting = sell(journal, -250)
    holding = held(journal, "tHELD")  # -480
    journal.execute("UPDATE sales SET created_at = '2026-12-03T21:00:00.000+00:00' WHERE id = ?", (waiting,))
    journal.execute("UPDATE sales SET created_at = '2026-12-03T20:15:00.000+00:00' WHERE id = ?", (holding,))
    journal.mark_done(sell(journal, -300), 700, approved=True)
    elsewhere = sell(journal, -900, card=OTHER_CARD)
    journal.mark_done(elsewhere, 100)
    journal.mark_booked_elsewhere(elsewhere, "202 on the first request")
    unserved = [sell(journal, amount, approved=False) for amount in (-500, -110, -120, -130)]
    for sale_id in unserved:
        journal.mark_done(sale_id, 1000)
    keys = [str(record(journal, i)["idempotency_key"]) for i in unserved]
    assert journal.resolve(keys[1], "refunded", "max")
    assert journal.resolve(keys[2], "refunded", "max")
    assert journal.resolve(keys[3], "served", "max")
    journal.mark_rejected(sell(journal, -700), "server refused after serving")
    journal.mark_rejected(sell(journal, -60, approved=False), "insufficient_balance")
    journal.record_decline(
        token_id=CARD, products=["espresso"], amount_cents=-250, description="Kaffee", reason="unknown_card"
    )

    assert journal.status() == JournalStatus(
        pending=2,
        pending_cents=-250 - 480,
        held=1,
        done=5,  # booked here: the -300, the one to refund, the two refunded, the one served
        rejected=1,
        rejected_cents=-700,
        declined=1,
        oldest_pending="2026-12-03T20:15:00.000+00:00",
        to_refund=1,
        to_refund_cents=-500,
        refunded=2,
        served_by_hand=1,
        booked_elsewhere=1,
        refused_at_tap=1,
    )
    assert journal.unconfirmed_count() == 2
    journal.settle_held("tHELD", booked=True)
    assert journal.unconfirmed_count() == 1
    assert journal.status().oldest_pending == "2026-12-03T21:00:00.000+00:00"
