"""A sale's journal record: the columns each write sets, only in the states it may; read back exactly."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from terminal.journal import (
    MAX_BILL_RETRIES,
    SALE_COLUMNS,
    Journal,
    JournalError,
    OfflineView,
    TableBillRecord,
    allow_card_statement,
    new_idempotency_key,
    offline_reason,
    remember_card_statement,
    sale_from_row,
    table_bill_statement,
)
from terminal.model import DeclineReason, SaleState
from terminal.outbox.table import insert_statement
from terminal.service.boot_clock import Moment
from tests.terminal_lab import ERIKA, MAX
from tests.test_journal import sale as coffee

TOPUP_CARD = "04C0FFEE000001"
OLD = "2000-01-01T00:00:00.000+00:00"  # an updated_at no write of today can leave in place by chance
COLUMNS = (
    "id, idempotency_key, token_id, products, amount_cents, description, tag, state, reason, offline,"
    " operator, balance_before, balance_after, maybe_sent, hold, attempts, next_attempt_at, created_at,"
    " updated_at, attempted_at, last_status, server_errors, dispensed, approved, resolved, resolved_at,"
    " resolved_by, goods"
)
NAMES = tuple(name.strip() for name in COLUMNS.split(","))
ISO_UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")
URL_SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.open(tmp_path / "state" / "journal.sqlite3")
    yield j
    j.close()


def row(journal: Journal, sale_id: int) -> dict[str, object]:
    """The sale's row as SQLite holds it, every column by name (``goods`` is in no SaleRecord)."""
    (values,) = journal.query(f"SELECT {COLUMNS} FROM sales WHERE id = ?", (sale_id,))
    return dict(zip(NAMES, values, strict=True))


def card_row(journal: Journal, token_id: str) -> tuple[object, ...] | None:
    found = journal.query(
        "SELECT balance_cents, seen_at, denied_reason, seen_boot, seen_uptime FROM cards WHERE token_id = ?",
        (token_id,),
    )
    return tuple(found[0]) if found else None


def olgas_topup(journal: Journal) -> int:
    """A 10 € top-up credited by operator olga, pending; its sale id."""
    return journal.record_sale(
        token_id=TOPUP_CARD,
        products=[9],
        amount_cents=1000,
        description="Aufladen",
        tag=None,
        offline=False,
        operator="olga",
    ).id


def written_between(text: object, before: float, after: float) -> bool:
    """``text`` is a journal time (UTC, ISO 8601, milliseconds) taken between ``before`` and ``after``."""
    assert isinstance(text, str) and ISO_UTC_MS.fullmatch(text), text
    at = datetime.fromisoformat(text).timestamp()
    return before - 0.001 <= at <= after  # milliseconds are cut, not rounded


def age_updated_at(journal: Journal, *sale_ids: int) -> None:
    marks = ",".join("?" for _ in sale_ids)
    journal.execute(f"UPDATE sales SET updated_at = ? WHERE id IN ({marks})", (OLD, *sale_ids))


# --- keys, times, reasons ---------------------------------------------------------------------------


def test_a_new_key_is_t_and_24_url_safe_characters_and_never_repeats() -> None:
    keys = [new_idempotency_key() for _ in range(500)]
    assert len(set(keys)) == 500
    for key in keys:
        # "t" first: a key never starts with "-", which a command line would take for an option
        assert len(key) == 25 and key[0] == "t" and set(key[1:]) <= URL_SAFE, key


def test_an_offline_decision_reads_offline_colon_why() -> None:
    assert offline_reason("accepted (balance 2000, 12 s old)") == "offline: accepted (balance 2000, 12 s old)"


# --- record_sale and record_decline -----------------------------------------------------------------


def test_a_sale_is_journaled_with_exactly_the_columns_its_arguments_say(journal: Journal) -> None:
    before = time.time()
    plain = journal.record_sale(
        token_id=MAX,
        products=["espresso", 3],
        amount_cents=-250,
        description="Kaffee",
        tag=None,
        offline=False,
    )
    sent = journal.record_sale(
        token_id=ERIKA,
        products=["beer_ladder_2"],
        amount_cents=-390,
        description="Bier",
        tag="beer",
        offline=True,
        reason=offline_reason("accepted (balance 500, 12 s old)"),
        operator="olga",
        balance_before=500,
        attempting=True,
        key="tKEY",
        dispense=True,
        approved=False,
        goods=["beer"],
    )
    same_goods = coffee(journal, TOPUP_CARD, attempting=True, goods=["espresso", 3])
    after = time.time()
    stamped = coffee(journal, TOPUP_CARD, attempting=True, attempted_at=1.5e9, goods=[])

    got = row(journal, plain.id)
    assert written_between(got["created_at"], before, after) and got["updated_at"] == got["created_at"]
    key = str(got["idempotency_key"])
    assert len(key) == 25 and key[0] == "t" and set(key[1:]) <= URL_SAFE
    assert got == {
        **got,
        "token_id": MAX,
        "products": '["espresso", 3]',
        "amount_cents": -250,
        "description": "Kaffee",
        "tag": None,
        "state": "pending",
        "reason": "",
        "offline": 0,
        "operator": None,
        "balance_before": None,
        "balance_after": None,
        "maybe_sent": 0,
        "hold": 0,
        "attempts": 0,
        "next_attempt_at": 0.0,
        "attempted_at": None,  # not attempting: no request may have gone out
        "last_status": None,
        "server_errors": 0,
        "dispensed": None,  # nothing for the relay to give
        "approved": 1,
        "resolved": None,
        "resolved_at": None,
        "resolved_by": None,
        "goods": None,
    }

    got = row(journal, sent.id)
    assert isinstance(got["attempted_at"], float) and before <= got["attempted_at"] <= after
    assert got == {
        **got,
        "idempotency_key": "tKEY",
        "token_id": ERIKA,
        "products": '["beer_ladder_2"]',
        "amount_cents": -390,
        "description": "Bier",
        "tag": "beer",
        "state": "pending",
        "reason": "offline: accepted (balance 500, 12 s old)",
        "offline": 1,
        "operator": "olga",
        "balance_before": 500,
        "maybe_sent": 1,
        "attempts": 1,
        "dispensed": 0,  # to give: not dispensed until the relay says so
        "approved": 0,
        "goods": '["beer"]',  # poured, where the wallet booked a price step's product
    }
    # the goods are kept only where they are not the booked products
    assert (row(journal, same_goods)["goods"], row(journal, stamped)["goods"]) == (None, None)
    assert row(journal, stamped)["attempted_at"] == 1.5e9

    # what record_sale hands back is the row as journaled, the same as a later read of it
    for record in (plain, sent):
        assert record == journal.sale(record.id) == journal.sale_by_key(record.idempotency_key)
    assert (sent.offline, sent.operator, sent.dispensed, sent.approved) == (True, "olga", False, False)


def test_a_declined_tap_is_journaled_with_its_reason_and_the_card_balance_read_with_it(
    journal: Journal,
) -> None:
    before = time.time()
    journal.record_decline(
        token_id=ERIKA,
        products=["beer"],
        amount_cents=-390,
        description="Bier",
        reason=DeclineReason.INSUFFICIENT_BALANCE,
        also=[remember_card_statement(ERIKA, 120, 1000.0)],
    )
    journal.record_decline(
        token_id=MAX,
        products=[3],
        amount_cents=1000,
        description="Aufladen",
        reason="operator olga: shift cap 5000 cents reached (4500 credited today)",
        offline=True,
        operator="olga",
    )
    after = time.time()
    first, second = (row(journal, s.id) for s in journal.sales())
    assert written_between(first["created_at"], before, after) and first["updated_at"] == first["created_at"]
    key = str(first["idempotency_key"])
    assert len(key) == 25 and key[0] == "t" and key != second["idempotency_key"]
    assert first == {
        **first,
        "token_id": ERIKA,
        "products": '["beer"]',
        "amount_cents": -390,
        "description": "Bier",
        "tag": None,
        "state": "declined",
        "reason": "insufficient_balance",
        "offline": 0,  # an online decision unless said otherwise
        "operator": None,
        "balance_before": None,
        "maybe_sent": 0,
        "attempts": 0,
        "attempted_at": None,
        "dispensed": None,
        "approved": 0,  # never told approved: never to refund
        "goods": None,
    }
    assert (second["state"], second["offline"], second["operator"], second["amount_cents"]) == (
        "declined",
        1,
        "olga",
        1000,
    )
    assert second["reason"] == "operator olga: shift cap 5000 cents reached (4500 credited today)"
    # the balance the server just said rides in the decline's own write
    assert card_row(journal, ERIKA) == (120, 1000.0, None, None, None)
    assert card_row(journal, MAX) is None


# --- state changes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A state change applied to a pending sale and to settled ones, and what it does to the pending one."""

    apply: Callable[[Journal, int], object]
    changes: dict[str, object]  # the pending sale's columns it sets (updated_at apart)
    returns: object = None  # what it returns for the pending sale
    returns_settled: object = None  # and for a settled one


CHANGES = {
    "mark_attempt": Change(
        lambda j, s: j.mark_attempt(s, 1900, at=1.6e9),
        {"maybe_sent": 1, "attempts": 2, "balance_before": 1900, "attempted_at": 1.6e9},
    ),
    "mark_not_sent": Change(lambda j, s: j.mark_not_sent(s), {"maybe_sent": 0}),
    "mark_server_error": Change(lambda j, s: j.mark_server_error(s, 500), {"last_status": 500}),
    "count_server_error": Change(
        lambda j, s: j.count_server_error(s), {"server_errors": 1, "last_status": None}, 1, 0
    ),
    "schedule_retry": Change(
        lambda j, s: j.schedule_retry(s, 1.7e9, "server unreachable: " + "x" * 400),
        {"next_attempt_at": 1.7e9, "reason": ("server unreachable: " + "x" * 400)[:300]},
    ),
    "hold": Change(
        lambda j, s: j.hold(s, "unclear whether booked: " + "y" * 400),
        {"hold": 1, "reason": ("unclear whether booked: " + "y" * 400)[:300]},
    ),
    "mark_rejected": Change(
        lambda j, s: j.mark_rejected(s, "bad_product: " + "z" * 400),
        {"state": "rejected", "reason": ("bad_product: " + "z" * 400)[:300], "maybe_sent": 0},
    ),
    # the retry note goes; the guest was not told approved, and mark_done alone does not say so
    "mark_done": Change(
        lambda j, s: j.mark_done(s, 1750),
        {"state": "done", "balance_after": 1750, "maybe_sent": 0, "reason": ""},
    ),
    "mark_done approved": Change(
        lambda j, s: j.mark_done(s, 1750, approved=True),
        {"state": "done", "balance_after": 1750, "maybe_sent": 0, "reason": "", "approved": 1},
    ),
}


@pytest.mark.parametrize("name", CHANGES)
def test_a_state_change_writes_its_columns_of_a_pending_sale_and_leaves_settled_ones_alone(
    journal: Journal, name: str
) -> None:
    change = CHANGES[name]
    pending = coffee(journal, attempting=True, attempted_at=1.5e9, balance_before=2000, approved=False)
    journal.mark_server_error(pending, 503)
    journal.schedule_retry(pending, 0.0, "server unreachable: timed out")
    done = coffee(journal, ERIKA, attempting=True, attempted_at=1.4e9, dispense=True)
    journal.mark_server_error(done, 502)
    journal.mark_done(done, 310, approved=True)
    rejected = coffee(journal, TOPUP_CARD, approved=False)
    journal.mark_rejected(rejected, "unknown_card")
    age_updated_at(journal, pending, done, rejected)
    was = {sale_id: row(journal, sale_id) for sale_id in (pending, done, rejected)}
    assert (was[pending]["last_status"], was[pending]["maybe_sent"], was[pending]["attempts"]) == (503, 1, 1)

    before = time.time()
    assert change.apply(journal, pending) == change.returns
    after = time.time()
    assert change.apply(journal, done) == change.returns_settled
    assert change.apply(journal, rejected) == change.returns_settled

    now = row(journal, pending)
    assert written_between(now.pop("updated_at"), before, after)
    was[pending].pop("updated_at")
    assert now == {**was[pending], **change.changes}
    assert row(journal, done) == was[done] and row(journal, rejected) == was[rejected]


def test_counting_a_server_error_of_a_sale_not_in_the_journal_counts_nothing(journal: Journal) -> None:
    assert journal.count_server_error(404) == 0
    assert journal.query("SELECT COUNT(*) FROM sales") == [(0,)]


def test_a_request_about_to_go_out_is_noted_with_its_time_and_the_balance_read_with_it(
    journal: Journal,
) -> None:
    sale_id = coffee(journal)
    before = time.time()
    journal.mark_attempt(sale_id, 2000, also=[remember_card_statement(MAX, 2000, 1.0e9)])
    after = time.time()
    got = row(journal, sale_id)
    assert isinstance(got["attempted_at"], float) and before <= got["attempted_at"] <= after
    assert (got["maybe_sent"], got["attempts"], got["balance_before"]) == (1, 1, 2000)
    assert card_row(journal, MAX) == (2000, 1.0e9, None, None, None)


def test_done_with_the_card_allowed_again_in_the_same_write_and_only_once(journal: Journal) -> None:
    sale_id = coffee(journal, offline=True, reason=offline_reason("accepted (balance 2000, 3 s old)"))
    journal.deny_card(MAX, "insufficient_balance")
    journal.mark_done(sale_id, 1750, also=[allow_card_statement(MAX)])
    assert journal.denied_reason(MAX) is None
    got = row(journal, sale_id)
    assert (got["state"], got["reason"], got["balance_after"]) == (
        "done",
        "offline: accepted (balance 2000, 3 s old)",  # an offline decision's reason stays
        1750,
    )
    # done once: a second answer neither changes the sale nor runs what rode with the first
    journal.deny_card(MAX, "unknown_card")
    journal.mark_done(sale_id, 0, also=[allow_card_statement(MAX)])
    assert journal.denied_reason(MAX) == "unknown_card" and row(journal, sale_id) == got


def test_only_a_sale_still_to_dispense_is_marked_dispensed(journal: Journal) -> None:
    to_give, topup = coffee(journal, dispense=True), coffee(journal, ERIKA)
    keys = {s.id: s.idempotency_key for s in journal.sales()}
    age_updated_at(journal, to_give, topup)
    was = row(journal, to_give)
    journal.mark_dispensed(keys[to_give])
    journal.mark_dispensed(keys[topup])
    assert row(journal, to_give) == {**was, "dispensed": 1}  # updated_at stays: no delivery state moved
    assert row(journal, topup)["dispensed"] is None


def test_a_key_booked_elsewhere_ends_only_its_never_attempted_outbox_records(journal: Journal) -> None:
    other = coffee(journal, ERIKA)
    sale_id = journal.record_sale(
        token_id=MAX,
        products=["eur10"],
        amount_cents=-2345,
        description="Restaurant",
        tag=None,
        offline=False,
        key="bKEY",
        dispense=True,
    ).id
    journal.execute_all(
        [
            insert_statement("brink", "fresh", {"n": 1}, sale_id),
            insert_statement("brink", "tried", {"n": 2}, sale_id),
            insert_statement("brink", "maybe-sent", {"n": 3}, sale_id),
            insert_statement("brink", "other-sale", {"n": 4}, other),
        ]
    )
    journal.execute("UPDATE outbox SET attempts = 1 WHERE ref = 'tried'")
    journal.execute("UPDATE outbox SET maybe_sent = 1 WHERE ref = 'maybe-sent'")
    journal.mark_done(sale_id, 100)
    age_updated_at(journal, sale_id, other)
    journal.execute("UPDATE outbox SET updated_at = ?", (OLD,))
    was, was_other = row(journal, sale_id), row(journal, other)

    before = time.time()
    journal.mark_booked_elsewhere(sale_id, "the wallet had booked this key already (202)")
    after = time.time()

    got = row(journal, sale_id)
    stamp = got.pop("updated_at")
    assert written_between(stamp, before, after)
    was.pop("updated_at")
    assert got == {
        **was,
        "reason": "booked elsewhere: the wallet had booked this key already (202)",
        "dispensed": None,  # nothing was handed over for it here
    }
    outbox = journal.query("SELECT ref, state, reason, updated_at FROM outbox ORDER BY id")
    assert outbox == [
        ("fresh", "done", "booked elsewhere: the terminal that booked it delivers it", stamp),
        ("tried", "pending", "", OLD),
        ("maybe-sent", "pending", "", OLD),
        ("other-sale", "pending", "", OLD),
    ]
    # Not booked (done) yet: neither the sale nor its outbox records change (the outbox update rides on
    # the sale's, never alone).
    journal.mark_booked_elsewhere(other, "202")
    assert row(journal, other) == was_other
    assert journal.query("SELECT ref, state, reason, updated_at FROM outbox ORDER BY id") == outbox


# --- one write, all or nothing ----------------------------------------------------------------------


def test_a_failing_statement_rolls_the_whole_write_back_and_says_why(journal: Journal) -> None:
    unpayable = table_bill_statement(
        key="bKEY", table_id=2, party_id=50001, business_date="2026-11-30", orders=[], amount_cents=0
    )
    with pytest.raises(JournalError) as raised:
        coffee(journal, key="bKEY", also=[unpayable])
    assert str(raised.value) == "journal write failed: CHECK constraint failed: amount_cents > 0"
    assert journal.query("SELECT COUNT(*) FROM sales") == [(0,)], "the sale went with its bill row"

    sale_id = coffee(journal, key="bKEY")
    age_updated_at(journal, sale_id)
    was = row(journal, sale_id)
    with pytest.raises(JournalError) as raised:
        journal.mark_attempt(sale_id, 2000, at=1.6e9, also=[unpayable])
    assert str(raised.value) == "journal write failed: CHECK constraint failed: amount_cents > 0"
    with pytest.raises(JournalError) as raised:
        journal.mark_done(sale_id, 1750, also=[unpayable])
    assert str(raised.value) == "journal write failed: CHECK constraint failed: amount_cents > 0"
    with pytest.raises(JournalError) as raised:
        coffee(journal, key="bKEY")
    assert str(raised.value) == "journal write failed: UNIQUE constraint failed: sales.idempotency_key"
    assert row(journal, sale_id) == was, "neither the attempt nor the done stayed half written"

    # each failure ended its transaction: the next write goes through
    journal.mark_done(sale_id, 1750)
    assert row(journal, sale_id)["state"] == "done"


def test_a_closed_journal_says_it_cannot_be_read(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.sqlite3")
    journal.close()
    with pytest.raises(JournalError) as raised:
        journal.denied_reason(MAX)
    assert str(raised.value) == "journal read failed: Cannot operate on a closed database."


# --- reading sales back -----------------------------------------------------------------------------


def test_the_json_of_a_sale_is_every_field_a_person_reads_in_each_state(journal: Journal) -> None:
    held = coffee(
        journal,
        offline=True,
        reason=offline_reason("accepted (balance 2000, 3 s old)"),
        balance_before=2000,
        attempting=True,
        attempted_at=1.5e9,
    )
    journal.hold(held, "unclear whether booked")
    unserved = coffee(journal, ERIKA, dispense=True, approved=False)
    journal.mark_done(unserved, 110)
    refunded = coffee(journal, ERIKA, dispense=True)
    journal.mark_done(refunded, 0, approved=True)
    topup = olgas_topup(journal)
    journal.mark_rejected(topup, "unknown_card")
    journal.record_decline(
        token_id=ERIKA,
        products=["beer"],
        amount_cents=-390,
        description="Bier",
        reason=DeclineReason.OFFLINE_LIMIT,
        offline=True,
    )
    keys = {s.id: s.idempotency_key for s in journal.sales()}
    assert journal.resolve(keys[refunded], "refunded", "anna")
    declined = max(keys)
    rows = {sale_id: row(journal, sale_id) for sale_id in keys}

    def common(sale_id: int, token_id: str) -> dict[str, object]:
        return {"id": sale_id, "idempotency_key": keys[sale_id], "token_id": token_id}

    def times(sale_id: int) -> dict[str, object]:
        return {"created_at": rows[sale_id]["created_at"], "updated_at": rows[sale_id]["updated_at"]}

    coffee_json = {"products": ["espresso", 3], "amount_cents": -250}
    expected: list[dict[str, object]] = [
        {
            **common(held, MAX),
            **coffee_json,
            "state": "pending",
            "reason": "unclear whether booked",
            "offline": True,
            "operator": None,
            "balance_after": None,
            "attempts": 1,
            "held": True,
            "dispensed": None,
            "approved": True,
            "to_refund": False,
            "resolved": None,
            **times(held),
        },
        {
            **common(unserved, ERIKA),
            **coffee_json,
            "state": "done",
            "reason": "",
            "offline": False,
            "operator": None,
            "balance_after": 110,
            "attempts": 0,
            "held": False,
            "dispensed": False,
            "approved": False,
            "to_refund": True,  # charged, never told approved: staff owe the guest
            "resolved": None,
            **times(unserved),
        },
        {
            **common(refunded, ERIKA),
            **coffee_json,
            "state": "done",
            "reason": "",
            "offline": False,
            "operator": None,
            "balance_after": 0,
            "attempts": 0,
            "held": False,
            "dispensed": False,
            "approved": True,
            "to_refund": False,
            "resolved": {"how": "refunded", "at": rows[refunded]["resolved_at"], "by": "anna"},
            **times(refunded),
        },
        {
            **common(topup, TOPUP_CARD),
            "products": [9],
            "amount_cents": 1000,
            "state": "rejected",
            "reason": "unknown_card",
            "offline": False,
            "operator": "olga",
            "balance_after": None,
            "attempts": 0,
            "held": False,
            "dispensed": None,
            "approved": True,
            "to_refund": False,
            "resolved": None,
            **times(topup),
        },
        {
            **common(declined, ERIKA),
            "products": ["beer"],
            "amount_cents": -390,
            "state": "declined",
            "reason": "offline_limit",
            "offline": True,
            "operator": None,
            "balance_after": None,
            "attempts": 0,
            "held": False,
            "dispensed": None,
            "approved": False,
            "to_refund": False,
            "resolved": None,
            **times(declined),
        },
    ]
    got = [s.as_json() for s in journal.sales()]
    assert got == expected
    # `taptill journal --json` prints them as they are: key order and true/false, not 1/0, count
    assert [json.dumps(s) for s in got] == [json.dumps(s) for s in expected]
    assert isinstance(rows[refunded]["resolved_at"], str)


NULLABLE: dict[str, tuple[object, object]] = {  # column: (as stored, as read)
    "tag": ("coffee", "coffee"),
    "operator": ("olga", "olga"),
    "balance_before": (2000, 2000),
    "balance_after": (1750, 1750),
    "attempted_at": (1.5e9, 1.5e9),
    "last_status": (503, 503),
    "dispensed": (0, False),
    "resolved": ("refunded", "refunded"),
    "resolved_at": ("2026-12-03T09:00:00.000+00:00", "2026-12-03T09:00:00.000+00:00"),
    "resolved_by": ("olga", "olga"),
}


@pytest.mark.parametrize("column", NULLABLE)
def test_each_optional_field_is_read_from_its_own_column_alone(journal: Journal, column: str) -> None:
    """A reader asking a neighbouring column whether this one is NULL would drop or invent a value (an
    operator lost when no balance was read, a sale taken for not dispensed when it was approved)."""
    sale_id = journal.record_sale(
        token_id=MAX, products=["espresso"], amount_cents=-250, description="Kaffee", tag=None, offline=False
    ).id
    stored, read = NULLABLE[column]
    journal.execute(f"UPDATE sales SET {column} = ? WHERE id = ?", (stored, sale_id))
    got = journal.sale(sale_id)
    assert got is not None and got.approved is True
    assert {name: getattr(got, name) for name in NULLABLE} == {
        name: read if name == column else None for name in NULLABLE
    }
    assert type(getattr(got, column)) is type(read)


def test_a_sale_reads_back_when_it_was_journaled_and_when_it_last_changed(journal: Journal) -> None:
    sale_id = coffee(journal)
    journal.execute(
        "UPDATE sales SET created_at = ?, updated_at = ? WHERE id = ?",
        ("2026-11-30T21:00:00.000+00:00", "2026-11-30T21:04:30.125+00:00", sale_id),
    )
    got = journal.sale(sale_id)
    assert got is not None
    assert (got.created_at, got.updated_at) == (
        "2026-11-30T21:00:00.000+00:00",
        "2026-11-30T21:04:30.125+00:00",
    )


def test_sales_are_listed_oldest_first_by_state_and_found_by_id_or_key(journal: Journal) -> None:
    pending, done, rejected = coffee(journal), coffee(journal, ERIKA), coffee(journal, TOPUP_CARD)
    journal.mark_done(done, 1750)
    journal.mark_rejected(rejected, "unknown_card")
    journal.record_decline(
        token_id=MAX, products=[1], amount_cents=-100, description="d", reason=DeclineReason.OFFLINE
    )
    assert [s.id for s in journal.sales([SaleState.DONE, SaleState.PENDING])] == [pending, done]
    assert [s.id for s in journal.sales([SaleState.REJECTED])] == [rejected]
    assert [s.state for s in journal.sales()] == [
        SaleState.PENDING,
        SaleState.DONE,
        SaleState.REJECTED,
        SaleState.DECLINED,
    ]
    assert journal.sale(9999) is None and journal.sale_by_key("tNOSUCHKEYNOSUCHKEYNOSUCH") is None
    # what a report tool reads with its own query is the same record
    (raw,) = journal.query(f"SELECT {SALE_COLUMNS} FROM sales WHERE id = ?", (done,))
    assert sale_from_row(raw) == journal.sale(done)
    assert sale_from_row(raw).balance_after == 1750


def test_the_outbox_takes_at_most_a_hundred_due_sales_oldest_first(journal: Journal) -> None:
    ids = [coffee(journal, f"04{n:012X}") for n in range(101)]
    assert [s.id for s in journal.due_sales()] == ids[:100]
    assert [s.id for s in journal.due_sales(limit=3)] == ids[:3]
    journal.schedule_retry(ids[0], 500.0, "timeout")
    assert [s.id for s in journal.due_sales(now=500.0, limit=2)] == ids[:2], "due at its time exactly"
    assert [s.id for s in journal.due_sales(now=499.9, limit=2)] == ids[1:3]


# --- table bills ------------------------------------------------------------------------------------


def pay_bill(
    journal: Journal, key: str, *, table: int, day: str, amount: int, approved: bool = True
) -> tuple[int, str]:
    """A sale paying a table's bill; its id and the time its bill row was written."""
    statement = table_bill_statement(
        key=key,
        table_id=table,
        party_id=50000 + table,
        business_date=day,
        orders=[(99000 + table, table, amount - 100), (99100 + table, None, 100)],
        amount_cents=amount,
    )
    sale = journal.record_sale(
        token_id=MAX,
        products=["eur10"],
        amount_cents=-amount,
        description="Restaurant",
        tag=None,
        offline=False,
        key=key,
        also=[statement],
        approved=approved,
    )
    assert sale.pays_table
    return sale.id, str(statement.params[6])


def test_table_bills_are_listed_per_business_day_with_their_sales_state(journal: Journal) -> None:
    before = time.time()
    paid, paid_at = pay_bill(journal, "bPAID", table=2, day="2026-11-30", amount=2345)
    back, back_at = pay_bill(journal, "bBACK", table=3, day="2026-11-30", amount=1200, approved=False)
    waiting, waiting_at = pay_bill(journal, "bWAIT", table=5, day="2026-12-01", amount=800)
    after = time.time()
    assert all(written_between(at, before, after) for at in (paid_at, back_at, waiting_at))
    journal.mark_done(paid, 55, approved=True)
    journal.mark_done(back, 1300)  # booked while the guest had no answer: paid all the same
    assert journal.resolve("bBACK", "refunded", "anna")  # staff gave the money back after all
    journal.schedule_retry(waiting, 0.0, "server unreachable: timed out")

    def orders(table: int, amount: int) -> tuple[dict[str, object], ...]:
        return (
            {"order_id": 99000 + table, "number": table, "due_cents": amount - 100},
            {"order_id": 99100 + table, "number": None, "due_cents": 100},
        )

    records = [
        TableBillRecord("bPAID", 2, 50002, "2026-11-30", orders(2, 2345), 2345, paid_at, "done", "", True),
        TableBillRecord(
            "bBACK", 3, 50003, "2026-11-30", orders(3, 1200), 1200, back_at, "done", "", False, "refunded"
        ),
        TableBillRecord(
            "bWAIT",
            5,
            50005,
            "2026-12-01",
            orders(5, 800),
            800,
            waiting_at,
            "pending",
            "server unreachable: timed out",
            True,
        ),
    ]
    assert journal.table_bills("2026-11-30") == records[:2]
    assert journal.table_bills() == records
    assert journal.table_bills("2026-12-02") == []


def test_a_bill_is_looked_for_under_its_key_and_its_retry_keys_up_to_the_bound(journal: Journal) -> None:
    keys = ["bKEY", *(f"bKEY-{n}" for n in range(2, MAX_BILL_RETRIES + 1))]
    for key in keys:
        assert journal.bill_payment("bKEY") == (None, key)
        journal.mark_rejected(coffee(journal, key=key), "server_trouble: never approved")
    beyond = f"bKEY-{MAX_BILL_RETRIES + 1}"
    assert journal.bill_payment("bKEY") == (None, beyond)
    journal.mark_done(coffee(journal, key=beyond), 0)
    # keys past the bound are not looked at; a second payment under one is still refused by its key
    assert journal.bill_payment("bKEY") == (None, beyond)
    with pytest.raises(JournalError) as raised:
        coffee(journal, key=beyond)
    assert str(raised.value) == "journal write failed: UNIQUE constraint failed: sales.idempotency_key"


# --- cards ------------------------------------------------------------------------------------------


def test_a_balance_seen_in_this_boot_ages_by_the_boot_clock_and_across_boots_by_the_wall(
    journal: Journal,
) -> None:
    journal.remember_card(MAX, 1500, Moment(1000.0, "boot-1", 50.0))
    journal.remember_card(ERIKA, 300, Moment(2000.0, "boot-1", 0.0))  # right at boot
    journal.remember_card(TOPUP_CARD, 700, 3000.0)  # a wall-clock time of an unknown boot
    journal.remember_card("04AAAA", 5, Moment(4000.0, "", 7.0))  # an uptime of no known boot means nothing
    assert card_row(journal, MAX) == (1500, 1000.0, None, "boot-1", 50.0)
    assert card_row(journal, ERIKA) == (300, 2000.0, None, "boot-1", 0.0)
    assert card_row(journal, TOPUP_CARD) == (700, 3000.0, None, None, None)
    assert card_row(journal, "04AAAA") == (5, 4000.0, None, None, None)

    def age(uid: str, at: float | Moment) -> float | None:
        return journal.offline_view(uid, at).balance_age_s

    assert age(MAX, Moment(1000.0 - 3600, "boot-1", 80.0)) == 30.0, "the wall clock stepped back an hour"
    assert age(ERIKA, Moment(2000.0, "boot-1", 12.5)) == 12.5
    assert age(MAX, Moment(5000.0, "boot-2", 3.0)) == 4000.0, "another boot: only the wall clock tells"
    assert age(MAX, 1004.5) == 4.5
    assert age(TOPUP_CARD, Moment(3010.0, "boot-1", 99.0)) == 10.0
    assert age(TOPUP_CARD, 2990.0) == 0.0, "seen in the future (a clock step): just now"
    assert journal.offline_view(MAX, 1004.5).last_balance == 1500


def test_the_offline_view_counts_the_money_still_on_its_way(journal: Journal) -> None:
    journal.remember_card(MAX, 2000, 1000.0)
    coffee(journal, MAX)
    coffee(journal, MAX, -300)
    coffee(journal, ERIKA, -100)
    olgas_topup(journal)
    journal.mark_done(coffee(journal, ERIKA, -150), 350)
    journal.mark_rejected(coffee(journal, ERIKA, -120), "unknown_card")
    journal.record_decline(
        token_id=ERIKA, products=[1], amount_cents=-250, description="d", reason=DeclineReason.OFFLINE
    )
    # pending only: 250 + 300 (Max) + 100 (Erika) owed, 1000 credited and not confirmed
    assert journal.offline_view(MAX, 1060.0) == OfflineView(
        last_balance=2000,
        balance_age_s=60.0,
        card_unconfirmed_cents=550,
        total_unconfirmed_cents=-350,
        unconfirmed_count=4,
        denied_reason=None,
        unconfirmed_credit_cents=1000,
    )
    journal.deny_card(ERIKA, "unknown_card")
    assert journal.offline_view(ERIKA, 1060.0) == OfflineView(None, None, 100, -350, 4, "unknown_card", 1000)
    assert journal.offline_view("04DEADBEEF", 0.0) == OfflineView(None, None, 0, -350, 4, None, 1000)


def test_a_denial_keeps_the_cards_balance_and_is_cut_to_200_characters(journal: Journal) -> None:
    journal.remember_card(MAX, 2000, 1000.0)
    journal.deny_card(MAX, "insufficient_balance")
    assert card_row(journal, MAX) == (2000, 1000.0, "insufficient_balance", None, None)
    journal.deny_card(MAX, "unknown_card")  # a later refusal replaces the reason
    journal.deny_card(ERIKA, "unknown_card")
    long = "insufficient_balance: " + "x" * 300
    journal.deny_card(TOPUP_CARD, long)
    assert card_row(journal, TOPUP_CARD) == (None, None, long[:200], None, None)
    assert (journal.denied_reason(MAX), journal.denied_reason("04DEADBEEF")) == ("unknown_card", None)
    assert list(journal.denied_cards().items()) == [(long[:200], 1), ("unknown_card", 2)]
    journal.remember_card(MAX, 2500, Moment(1100.0, "boot-1", 60.0))  # the server answered: denial ends
    assert card_row(journal, MAX) == (2500, 1100.0, None, "boot-1", 60.0)


# --- what the tap path and the outbox read --------------------------------------------------------------


def test_the_reads_of_every_tap_and_every_outbox_look_never_scan_the_nights_sales(journal: Journal) -> None:
    # A festival night journals thousands of sales; a tap and the outbox's look every 2 s must read
    # only the card's or the pending ones (an index search), never every sale (a plain SCAN).
    for _ in range(30):
        coffee(journal, key=new_idempotency_key())
    journal.execute("UPDATE sales SET state = 'done'")
    pending = coffee(journal)
    seen: list[str] = []
    journal.connection.set_trace_callback(seen.append)
    try:
        assert [s.id for s in journal.due_sales()] == [pending]
        assert [s.id for s in journal.pending_for_card(MAX)] == [pending]
        journal.offline_view(MAX, Moment(1.7e9))
        assert journal.unconfirmed_count() == 1
        journal.sale_by_key("tKEY")
        journal.sale(pending)
    finally:
        journal.connection.set_trace_callback(None)
    assert len(seen) == 7
    for statement in seen:
        plan = [str(r[3]) for r in journal.query(f"EXPLAIN QUERY PLAN {statement}")]
        assert not [step for step in plan if re.fullmatch(r"SCAN (s|sales)", step)], (statement, plan)
