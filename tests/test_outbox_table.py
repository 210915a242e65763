"""The outbox table on a real SQLite journal: what an insert stores, what ``rows`` and ``due`` select, what
each store verb writes to a record (and to nothing but pending ones), what a person settling or giving up
a held record changes, and the lines the operator reads in the log."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from terminal.journal import Journal
from terminal.outbox.table import (
    REASON_MAX,
    OutboxRow,
    OutboxTable,
    give_up_held,
    insert_statement,
    rows,
    settle_held,
)

LOGGER = "terminal.outbox.table"
SHOP = "ready2order"
OTHER = "partybroker"


def add(journal: Journal, ref: str, destination: str = SHOP, sale_id: int | None = None) -> OutboxRow:
    journal.execute(*insert_statement(destination, ref, {"ref": ref}, sale_id=sale_id))
    (record,) = [r for r in rows(journal, destination) if r.ref == ref]
    return record


def one(journal: Journal, ref: str, destination: str = SHOP) -> OutboxRow:
    (record,) = [r for r in rows(journal, destination) if r.ref == ref]
    return record


def columns(record: OutboxRow) -> tuple[object, ...]:
    """What a verb may change: state, reason, attempts, maybe_sent, hold, next_attempt_at."""
    return (
        record.state,
        record.reason,
        record.attempts,
        record.maybe_sent,
        record.hold,
        record.next_attempt_at,
    )


# --- insert and read back ---------------------------------------------------------------------------------


def test_an_inserted_record_is_pending_with_its_payload_stored_compact(journal: Journal) -> None:
    sale = journal.record_sale(
        token_id="04AA", products=["espresso"], amount_cents=-250, description="K", tag=None, offline=False
    )
    payload = {"lines": [{"product": "espresso", "quantity": 2}], "total_cents": 500, "training": False}
    journal.execute(*insert_statement(SHOP, "k1/espresso", payload, sale_id=sale.id))
    journal.execute(*insert_statement(OTHER, "k1/espresso", {}))  # a ref is unique per destination only
    (record,) = rows(journal, SHOP)
    assert (record.destination, record.ref, record.sale_id, record.payload) == (
        SHOP,
        "k1/espresso",
        sale.id,
        payload,
    )
    assert columns(record) == ("pending", "", 0, False, False, 0.0)
    assert record.created_at == record.updated_at and record.created_at.endswith("+00:00")
    (stored,) = journal.query("SELECT payload FROM outbox WHERE destination = ?", (SHOP,))
    assert stored[0] == '{"lines":[{"product":"espresso","quantity":2}],"total_cents":500,"training":false}'
    assert rows(journal, OTHER)[0].sale_id is None


def test_a_record_reads_back_each_column_from_its_own_place(journal: Journal) -> None:
    add(journal, "a")
    journal.execute(
        "UPDATE outbox SET reason = 'why', attempts = 3, maybe_sent = 1, hold = 1, next_attempt_at = 12.5,"
        " created_at = '2026-06-01T20:00:00.000+00:00', updated_at = '2026-06-01T21:00:00.000+00:00'"
    )
    record = one(journal, "a")
    assert columns(record) == ("pending", "why", 3, True, True, 12.5)
    assert (record.created_at, record.updated_at) == (
        "2026-06-01T20:00:00.000+00:00",
        "2026-06-01T21:00:00.000+00:00",
    )


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"text"'])
def test_a_payload_that_is_not_a_json_object_reads_as_empty(journal: Journal, text: str) -> None:
    add(journal, "a")
    journal.execute("UPDATE outbox SET payload = ?", (text,))
    assert one(journal, "a").payload == {}


def test_rows_select_by_destination_and_states_oldest_first(journal: Journal) -> None:
    for ref in ("a", "b", "c", "d"):
        add(journal, ref)
    add(journal, "x", OTHER)
    table = OutboxTable(journal, SHOP)
    a, b, c, _ = table.due(10)
    table.done([b], None, by_settling=False)
    table.rejected([c], "refused", "400")
    table.gave_up([a], "maybe applied")

    def refs(destination: str | None, states: tuple[str, ...] = ()) -> list[str]:
        return [r.ref for r in rows(journal, destination, states)]

    assert refs(None) == ["a", "b", "c", "d", "x"]
    assert refs(SHOP) == ["a", "b", "c", "d"]
    assert refs(SHOP, ("pending",)) == ["d"]
    assert refs(SHOP, ("done", "rejected")) == ["b", "c"]
    assert refs(SHOP, ("ambiguous", "pending", "rejected")) == ["a", "c", "d"]
    assert refs(None, ("pending",)) == ["d", "x"]
    assert refs(OTHER, ("done", "rejected")) == []


def test_due_is_the_pending_unheld_records_of_its_destination_oldest_first_up_to_the_limit(
    journal: Journal,
) -> None:
    for ref in ("a", "b", "c", "d", "e"):
        add(journal, ref)
    add(journal, "x", OTHER)
    table = OutboxTable(journal, SHOP)
    a, b, *_ = table.due(10)
    table.hold([a], "the total differs")
    table.done([b], None, by_settling=False)
    assert [r.ref for r in table.due(10)] == ["c", "d", "e"]
    assert [r.ref for r in table.due(2)] == ["c", "d"]
    assert table.due(0) == []


# --- what each store verb writes ----------------------------------------------------------------------------


def test_begin_counts_an_attempt_that_may_have_been_sent(journal: Journal) -> None:
    table = OutboxTable(journal, SHOP)
    a, b = add(journal, "a"), add(journal, "b")
    table.begin([a], None)
    table.begin([a, b], None)
    assert columns(one(journal, "a")) == ("pending", "", 2, True, False, 0.0)
    assert columns(one(journal, "b")) == ("pending", "", 1, True, False, 0.0)


def test_a_verb_writes_the_given_records_only_and_stamps_them(journal: Journal) -> None:
    table = OutboxTable(journal, SHOP)
    a, _ = add(journal, "a"), add(journal, "b")
    journal.execute("UPDATE outbox SET updated_at = 'then'")
    table.note_retry([a], 99.5, "waiting")
    stamped = one(journal, "a").updated_at  # an ISO time of now, not the 'then' written above
    assert stamped[:2] == "20" and stamped.endswith("+00:00")
    assert columns(one(journal, "b")) == ("pending", "", 0, False, False, 0.0)
    assert one(journal, "b").updated_at == "then"
    table.note_retry([], 1.0, "nothing to write")  # no record: no write, no error
    assert one(journal, "b").updated_at == "then"


def test_done_clears_maybe_sent_and_hold_and_keeps_a_text_result_as_reason(journal: Journal) -> None:
    table = OutboxTable(journal, SHOP)
    a, b, c = add(journal, "a"), add(journal, "b"), add(journal, "c")
    table.begin([a, b, c], None)
    table.hold([a, b, c], "the total differs")
    table.done([a], "invoice 17 found by its reference", by_settling=True)
    table.done([b], {"invoice_id": 17}, by_settling=False)  # not a text: no reason left
    table.done([c], "x" * (REASON_MAX + 1), by_settling=False)
    assert columns(one(journal, "a")) == ("done", "invoice 17 found by its reference", 1, False, False, 0.0)
    assert columns(one(journal, "b")) == ("done", "", 1, False, False, 0.0)
    assert one(journal, "c").reason == "x" * REASON_MAX


def test_rejected_notes_the_code_and_reason_and_warns(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    table = OutboxTable(journal, SHOP)
    a, b, c, d = (add(journal, ref) for ref in "abcd")
    table.begin([a, b, c, d], None)
    table.rejected([a, b], "no such product", "400")
    table.rejected([c], "refused", "")
    table.rejected([d], "y" * REASON_MAX, "422")
    assert columns(one(journal, "a")) == ("rejected", "400: no such product", 1, False, False, 0.0)
    assert columns(one(journal, "c")) == ("rejected", "refused", 1, False, False, 0.0)
    assert one(journal, "d").reason == ("422: " + "y" * REASON_MAX)[:REASON_MAX]
    assert [(r.levelno, r.getMessage()) for r in caplog.records][:2] == [
        (logging.WARNING, "ready2order: 2 record(s) rejected: 400: no such product"),
        (logging.WARNING, "ready2order: 1 record(s) rejected: refused"),
    ]


def test_not_sent_and_a_server_error_leave_the_record_pending(journal: Journal) -> None:
    table = OutboxTable(journal, SHOP)
    a, b = add(journal, "a"), add(journal, "b")
    table.begin([a, b], None)
    table.not_sent([a])
    table.server_error([b], 503)
    assert columns(one(journal, "a")) == ("pending", "", 1, False, False, 0.0)
    assert columns(one(journal, "b")) == ("pending", "the server answered 503", 1, True, False, 0.0)


def test_note_retry_keeps_the_time_and_the_reason_cut(journal: Journal) -> None:
    table = OutboxTable(journal, SHOP)
    a, b = add(journal, "a"), add(journal, "b")
    table.note_retry([a], 1_800_000_000.25, "rate limited")
    table.note_retry([b], 5.0, "z" * (REASON_MAX + 1))
    assert columns(one(journal, "a")) == ("pending", "rate limited", 0, False, False, 1_800_000_000.25)
    assert one(journal, "b").reason == "z" * REASON_MAX


def test_hold_waits_for_a_person_and_says_so_in_the_log(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    table = OutboxTable(journal, SHOP)
    a, b, c = add(journal, "a"), add(journal, "b"), add(journal, "c")
    table.begin([a], None)
    table.hold([a, b], "the total differs: settle it")
    table.hold([c], "w" * (REASON_MAX + 1))
    assert columns(one(journal, "a")) == ("pending", "the total differs: settle it", 1, True, True, 0.0)
    assert columns(one(journal, "b")) == ("pending", "the total differs: settle it", 0, False, True, 0.0)
    assert one(journal, "c").reason == "w" * REASON_MAX
    assert [(r.levelno, r.getMessage()) for r in caplog.records][:1] == [
        (logging.ERROR, "ready2order: 2 record(s) held for a person: the total differs: settle it")
    ]


def test_gave_up_leaves_a_maybe_applied_record_ambiguous(journal: Journal) -> None:
    table = OutboxTable(journal, SHOP)
    a, b = add(journal, "a"), add(journal, "b")
    table.begin([a, b], None)
    table.gave_up([a], "no answer: maybe applied")
    table.gave_up([b], "v" * (REASON_MAX + 1))
    assert columns(one(journal, "a")) == ("ambiguous", "no answer: maybe applied", 1, True, False, 0.0)
    assert one(journal, "b").reason == "v" * REASON_MAX


def test_a_record_that_has_ended_is_never_written_again(journal: Journal) -> None:
    table = OutboxTable(journal, SHOP)
    a, b, c = add(journal, "a"), add(journal, "b"), add(journal, "c")
    table.done([a], "applied", by_settling=False)
    table.rejected([b], "refused", "400")
    table.gave_up([c], "maybe applied")
    ended = [columns(one(journal, ref)) for ref in "abc"]
    verbs: list[Callable[[], None]] = [
        lambda: table.begin([a, b, c], None),
        lambda: table.done([a, b, c], "again", by_settling=False),
        lambda: table.rejected([a, b, c], "again", "500"),
        lambda: table.not_sent([a, b, c]),
        lambda: table.server_error([a, b, c], 500),
        lambda: table.note_retry([a, b, c], 7.0, "again"),
        lambda: table.hold([a, b, c], "again"),
        lambda: table.gave_up([a, b, c], "again"),
    ]
    for verb in verbs:
        verb()
    assert [columns(one(journal, ref)) for ref in "abc"] == ended


# --- a person settles or gives up a held record -------------------------------------------------------------


def held(journal: Journal, *refs: str) -> list[OutboxRow]:
    table = OutboxTable(journal, SHOP)
    records = [add(journal, ref) for ref in refs]
    table.begin(records, None)
    table.note_retry(records, 42.0, "waiting")
    table.hold(records, "the total differs")
    return records


def test_settling_a_held_record_marks_it_done_or_sends_it_again(journal: Journal) -> None:
    held(journal, "a", "b")
    assert settle_held(journal, "a", booked=True)
    assert settle_held(journal, "b", booked=False)
    assert columns(one(journal, "a")) == ("done", "settled by hand: applied", 1, False, False, 0.0)
    assert columns(one(journal, "b")) == ("pending", "settled by hand: sending again", 1, False, False, 0.0)
    assert not settle_held(journal, "b", booked=True), "no longer held"
    assert not settle_held(journal, "zz", booked=True), "no such record"


def test_a_held_record_is_settled_by_its_id_and_a_digit_ref_by_its_ref(journal: Journal) -> None:
    a, b = held(journal, "12", "b")  # ids 1 and 2: the record whose ref is "12" is not the one of id 12
    assert (a.id, b.id) == (1, 2)
    assert settle_held(journal, "#2", booked=True)
    assert one(journal, "b").state == "done"
    assert not settle_held(journal, "#12", booked=True), "no record has id 12"
    assert settle_held(journal, "12", booked=True)
    assert one(journal, "12").state == "done"


def test_giving_up_a_held_record_rejects_it_naming_who(journal: Journal) -> None:
    held(journal, "a", "b")
    assert give_up_held(journal, "a", "staff Erika")
    assert columns(one(journal, "a")) == (
        "rejected",
        "given up by hand: refunded (by staff Erika)",
        1,
        False,
        False,
        42.0,
    )
    assert not give_up_held(journal, "a", "staff Erika"), "no longer held"
    assert not give_up_held(journal, "zz", "staff Erika"), "no such record"
    assert give_up_held(journal, "b", "u" * REASON_MAX)
    assert one(journal, "b").reason == ("given up by hand: refunded (by " + "u" * REASON_MAX)[:REASON_MAX]


def test_a_record_not_held_is_not_given_up(journal: Journal) -> None:
    add(journal, "a")
    assert not give_up_held(journal, "a", "staff")
    assert columns(one(journal, "a")) == ("pending", "", 0, False, False, 0.0)


def test_a_held_record_is_given_up_by_its_id_and_a_digit_ref_by_its_ref(journal: Journal) -> None:
    a, b = held(journal, "12", "b")
    assert (a.id, b.id) == (1, 2)
    assert give_up_held(journal, "#2", "staff")
    assert one(journal, "b").state == "rejected"
    assert not give_up_held(journal, "#12", "staff"), "no record has id 12"
    assert not give_up_held(journal, "#b", "staff"), "not an id, and no record has that ref"
    assert give_up_held(journal, "12", "staff")
    assert one(journal, "12").state == "rejected"


def test_a_ref_starting_with_a_hash_but_not_an_id_is_a_ref(journal: Journal) -> None:
    held(journal, "#x1", "#")
    assert give_up_held(journal, "#x1", "staff") and settle_held(journal, "#", booked=True)
    assert (one(journal, "#x1").state, one(journal, "#").state) == ("rejected", "done")
