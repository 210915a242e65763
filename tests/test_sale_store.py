"""SaleStore on a real SQLite journal: what each outbox verb writes to a sale's row, to the card's row and to
the unsellable products, and what it tells the controller and the log."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import pytest

from terminal.journal import Journal, SaleRecord
from terminal.model import DeclineReason, SaleState
from terminal.wallet.sale_store import ReportStatements, SaleStore
from tests.terminal_lab import ERIKA, MAX

WALL = 1_800_000_000.5  # the store's clock: every time it notes must be this one, never time.time()


def store_of(
    journal: Journal,
    *,
    dedupes: bool = False,
    reports_for: ReportStatements | None = None,
    on_unsellable: Callable[[frozenset[str]], None] | None = None,
) -> SaleStore:
    return SaleStore(
        journal, dedupes=dedupes, clock=lambda: WALL, reports_for=reports_for, on_unsellable=on_unsellable
    )


def sale(
    journal: Journal,
    uid: str = MAX,
    products: Sequence[str | int] = (1,),
    *,
    offline: bool = False,
    balance_before: int | None = None,
    approved: bool = True,
) -> SaleRecord:
    return journal.record_sale(
        token_id=uid,
        products=products,
        amount_cents=-250,
        description="Kaffee",
        tag="coffee",
        offline=offline,
        reason="offline: server unreachable" if offline else "",
        balance_before=balance_before,
        approved=approved,
    )


def now(journal: Journal, record: SaleRecord) -> SaleRecord:
    current = journal.sale(record.id)
    assert current is not None
    return current


def card(journal: Journal, uid: str) -> tuple[object, ...] | None:
    row = journal.query("SELECT balance_cents, seen_at, denied_reason FROM cards WHERE token_id = ?", (uid,))
    return tuple(row[0]) if row else None


def reports(journal: Journal) -> list[str]:
    return [
        str(r[0]) for r in journal.query("SELECT value FROM cache WHERE key LIKE 'report %' ORDER BY key")
    ]


def report_of(record: SaleRecord) -> Sequence[tuple[str, Sequence[object]]]:
    """A statement that rides along with a sale's "done", as a Partybroker report does."""
    return [
        (
            "INSERT INTO cache (key, value, stored_at) VALUES (?, ?, ?)",
            (f"report {record.id}", record.token_id, 0),
        )
    ]


def test_a_new_store_knows_the_journals_unsellable_products_and_has_delivered_nothing(
    journal: Journal,
) -> None:
    journal.mark_unsellable([("7", "Sekt"), ("9", "Pfand")], "Item in no quota")
    store = store_of(journal)
    assert store.unsellable == frozenset({"7", "9"})
    assert store.delivered == 0
    assert store.unbooked_errors == {}
    assert store.journal is journal


def test_due_is_the_oldest_pending_sale_of_each_card_up_to_the_limit(journal: Journal) -> None:
    first, _, erika = sale(journal), sale(journal), sale(journal, ERIKA)
    store = store_of(journal)
    assert [s.id for s in store.due(10)] == [first.id, erika.id]
    assert [s.id for s in store.due(1)] == [first.id]


def test_begin_notes_each_attempt_with_the_balance_just_read_at_the_stores_clock(journal: Journal) -> None:
    a, b = sale(journal, balance_before=900), sale(journal, ERIKA, balance_before=400)
    store_of(journal).begin([a, b], 1750)
    for record in (a, b):
        row = now(journal, record)
        assert (row.maybe_sent, row.attempts, row.balance_before, row.attempted_at) == (True, 1, 1750, WALL)


def test_begin_without_a_balance_keeps_each_sales_own(journal: Journal) -> None:
    a, b = sale(journal, balance_before=900), sale(journal, ERIKA)
    store = store_of(journal)
    store.begin([a, b], None)
    store.begin([now(journal, a)], "1750")  # not cents: no basis
    assert (now(journal, a).balance_before, now(journal, a).attempts, now(journal, a).attempted_at) == (
        900,
        2,
        WALL,
    )
    assert (now(journal, b).balance_before, now(journal, b).maybe_sent) == (None, True)


def test_done_on_its_attempt_books_approves_remembers_the_balance_and_commits_the_reports(
    journal: Journal,
) -> None:
    a, b = sale(journal, approved=False), sale(journal, ERIKA, approved=False)
    store = store_of(journal, reports_for=report_of)
    store.begin([a, b], None)
    store.done([a, b], 1500, by_settling=False)
    for record in (a, b):
        row = now(journal, record)
        assert (row.state, row.balance_after, row.approved, row.maybe_sent) == (
            SaleState.DONE,
            1500,
            True,
            False,
        )
        assert card(journal, record.token_id) == (1500, WALL, None)
    assert reports(journal) == [MAX, ERIKA]
    assert store.delivered == 2


def test_done_by_settling_is_not_approved_for_the_guest(journal: Journal) -> None:
    record = sale(journal, approved=False)
    store_of(journal).done([record], 1500, by_settling=True)
    row = now(journal, record)
    assert (row.state, row.balance_after, row.approved) == (SaleState.DONE, 1500, False)
    assert row.to_refund  # booked, but the guest was never told: a person refunds or serves it


def test_done_without_a_balance_books_but_remembers_no_balance(journal: Journal) -> None:
    record = sale(journal)
    store = store_of(journal)  # no reports: nothing rides along
    store.done([record], None, by_settling=False)
    assert (now(journal, record).state, now(journal, record).balance_after) == (SaleState.DONE, None)
    assert card(journal, MAX) is None
    assert reports(journal) == []
    assert store.delivered == 1


def test_done_forgets_the_unbooked_errors_of_its_products_only(journal: Journal) -> None:
    store = store_of(journal)
    store.unbooked_errors.update({"1": 2, "2": 1, "9": 3})
    store.done([sale(journal, products=(1, "2", 1))], 1500, by_settling=False)
    assert store.unbooked_errors == {"9": 3}


def test_a_product_thought_unsellable_that_was_booked_is_sold_again(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    journal.mark_unsellable([("1", "Espresso"), ("9", "Pfand")], "Item in no quota")
    told: list[frozenset[str]] = []
    store = store_of(journal, on_unsellable=told.append)
    record = sale(journal, products=(1, 2))
    with caplog.at_level(logging.WARNING, logger="terminal.wallet.sale_store"):
        store.done([record], 1500, by_settling=False)
    assert set(journal.unsellable()) == {"9"}
    assert store.unsellable == frozenset({"9"})
    assert told == [frozenset({"9"})]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"sale {record.id} booked a product thought unsellable: selling it again")
    ]


def test_a_booked_sale_of_sellable_products_tells_nobody(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    journal.mark_unsellable([("9", "Pfand")], "Item in no quota")
    told: list[frozenset[str]] = []
    store = store_of(journal, on_unsellable=told.append)
    with caplog.at_level(logging.DEBUG, logger="terminal.wallet.sale_store"):
        store.done([sale(journal, products=(1,))], 1500, by_settling=False)
    assert set(journal.unsellable()) == {"9"}
    assert told == []
    assert caplog.records == []


def test_a_product_someone_else_already_made_sellable_tells_nobody_again(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    # The store's view is older than the journal: nothing is cleared, so nothing changed.
    journal.mark_unsellable([("1", "Espresso")], "Item in no quota")
    told: list[frozenset[str]] = []
    store = store_of(journal, on_unsellable=told.append)
    journal.clear_unsellable({"1"})
    with caplog.at_level(logging.DEBUG, logger="terminal.wallet.sale_store"):
        store.done([sale(journal, products=(1,))], 1500, by_settling=False)
    assert told == []
    assert caplog.records == []


def test_a_rejected_online_sale_is_journaled_with_its_code_and_the_card_stays_allowed(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    record = sale(journal)
    with caplog.at_level(logging.WARNING, logger="terminal.wallet.sale_store"):
        store_of(journal).rejected([record], "balance too low", DeclineReason.INSUFFICIENT_BALANCE)
    row = now(journal, record)
    assert (row.state, row.reason, row.maybe_sent) == (
        SaleState.REJECTED,
        "insufficient_balance: balance too low",
        False,
    )
    assert card(journal, MAX) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"sale {record.id} rejected: insufficient_balance (balance too low)"
    ]


def test_a_rejected_offline_sale_denies_the_card(journal: Journal) -> None:
    online, offline = sale(journal), sale(journal, ERIKA, offline=True)
    store_of(journal).rejected([online, offline], "balance too low", DeclineReason.INSUFFICIENT_BALANCE)
    assert card(journal, MAX) is None
    assert card(journal, ERIKA) == (None, None, "insufficient_balance")
    assert journal.offline_view(ERIKA, WALL).denied_reason == "insufficient_balance"
    assert now(journal, offline).state is SaleState.REJECTED


@pytest.mark.parametrize(
    "code",
    [DeclineReason.BAD_PRODUCT, DeclineReason.SERVER_TROUBLE, DeclineReason.PERMISSION, ""],
)
def test_a_rejection_about_a_product_the_server_or_the_terminal_never_denies_the_card(
    journal: Journal, code: str
) -> None:
    # An item in no quota (bad_product), a server failing, the terminal's own permission: not the card's
    # fault; a guest whose card was in such a sale must still be served offline.
    journal.remember_card(ERIKA, 900, WALL)
    record = sale(journal, ERIKA, offline=True)
    store_of(journal).rejected([record], "500 on every attempt", code)
    assert now(journal, record).state is SaleState.REJECTED
    assert card(journal, ERIKA) == (900, WALL, None)
    assert journal.offline_view(ERIKA, WALL).denied_reason is None


def test_the_next_booked_sale_ends_a_denial_in_its_own_write(journal: Journal) -> None:
    # with its balance (remembered, the denial gone) and without one (a server that does not say)
    for uid, balance in ((MAX, 1500), (ERIKA, None)):
        journal.deny_card(uid, DeclineReason.INSUFFICIENT_BALANCE)
        store_of(journal).done([sale(journal, uid)], balance, by_settling=False)
    assert card(journal, MAX) == (1500, WALL, None)
    assert card(journal, ERIKA) == (None, None, None)
    assert journal.denied_cards() == {}


def test_a_balance_read_before_an_attempt_is_remembered_and_ends_a_denial(journal: Journal) -> None:
    journal.deny_card(MAX, DeclineReason.UNKNOWN_CARD)
    journal.deny_card(ERIKA, DeclineReason.INSUFFICIENT_BALANCE)
    store = store_of(journal)
    store.begin([sale(journal, MAX)], 1750)
    store.begin([sale(journal, ERIKA)], None)  # a deduplicating server: nothing was read, nothing ends
    assert card(journal, MAX) == (1750, WALL, None)
    assert card(journal, ERIKA) == (None, None, "insufficient_balance")


def test_an_unknown_card_denies_the_card_online_too(journal: Journal) -> None:
    record = sale(journal)
    store_of(journal).rejected([record], "Not found.", DeclineReason.UNKNOWN_CARD)
    assert card(journal, MAX) == (None, None, "unknown_card")
    assert now(journal, record).reason == "unknown_card: Not found."


@pytest.mark.parametrize(("dedupes", "maybe_sent"), [(False, False), (True, True)])
def test_not_sent_forgets_the_attempt_unless_the_server_deduplicates(
    journal: Journal, dedupes: bool, maybe_sent: bool
) -> None:
    a, b = sale(journal), sale(journal, ERIKA)
    store = store_of(journal, dedupes=dedupes)
    store.begin([a, b], None)
    store.not_sent([a, b])
    assert [now(journal, r).maybe_sent for r in (a, b)] == [maybe_sent, maybe_sent]


@pytest.mark.parametrize(("dedupes", "status"), [(False, 502), (True, None)])
def test_a_server_error_is_noted_unless_the_server_deduplicates(
    journal: Journal, dedupes: bool, status: int | None
) -> None:
    a, b = sale(journal), sale(journal, ERIKA)
    store_of(journal, dedupes=dedupes).server_error([a, b], 502)
    assert [now(journal, r).last_status for r in (a, b)] == [status, status]


def test_a_retry_is_noted_with_its_time_and_reason(journal: Journal) -> None:
    a, b = sale(journal), sale(journal, ERIKA)
    store_of(journal).note_retry([a, b], WALL + 30, "server unreachable")
    for record in (a, b):
        row = now(journal, record)
        assert (row.next_attempt_at, row.reason, row.hold) == (WALL + 30, "server unreachable", False)


@pytest.mark.parametrize("verb", ["hold", "gave_up"])
def test_a_held_sale_waits_for_a_person_and_the_log_says_why(
    journal: Journal, caplog: pytest.LogCaptureFixture, verb: str
) -> None:
    a, b = sale(journal), sale(journal, ERIKA)
    store = store_of(journal)
    with caplog.at_level(logging.WARNING, logger="terminal.wallet.sale_store"):
        getattr(store, verb)([a, b], "balance did not tell")
    for record in (a, b):
        row = now(journal, record)
        assert (row.state, row.hold, row.reason) == (SaleState.PENDING, True, "balance did not tell")
    assert store.due(10) == []
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", f"sale {a.id} held for reconciliation: balance did not tell"),
        ("ERROR", f"sale {b.id} held for reconciliation: balance did not tell"),
    ]


def test_marking_products_unsellable_journals_them_and_tells_the_controller(journal: Journal) -> None:
    told: list[frozenset[str]] = []
    store = store_of(journal, on_unsellable=told.append)
    store.mark_unsellable([("7", "Sekt"), ("9", "Pfand")], "Item in no quota")
    assert journal.unsellable() == {
        "7": ("Sekt", "Item in no quota", journal.unsellable()["7"][2]),
        "9": ("Pfand", "Item in no quota", journal.unsellable()["9"][2]),
    }
    assert store.unsellable == frozenset({"7", "9"})
    assert told == [frozenset({"7", "9"})]


def test_a_store_nobody_listens_to_still_keeps_its_unsellable_products(journal: Journal) -> None:
    store = store_of(journal)
    store.mark_unsellable([("7", "Sekt")], "Item in no quota")
    assert store.unsellable == frozenset({"7"})
    store.done([sale(journal, products=(7,))], 100, by_settling=False)
    assert store.unsellable == frozenset()
