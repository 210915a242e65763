"""The one outbox on its own, with a fake destination over a real SQLite journal: every classification,
backoff bounds, a rate limit never exceeded, a loop that never spins, holds and settling, a crash at
every step of delivery, and the migration that moved Partybroker reports into the outbox table."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from terminal.emulator.wallet import WalletEmulator
from terminal.journal import MIGRATIONS, Journal
from terminal.outbox.landing import SLACK_S, LandingWindow
from terminal.outbox.loop import DeliveryLoop
from terminal.outbox.outcome import (
    Ambiguous,
    Booked,
    Done,
    Each,
    GaveUp,
    NotBooked,
    Rejected,
    Stalled,
    Unclear,
    Unreachable,
    Wait,
    settled,
)
from terminal.outbox.rate_limit import TokenBucket
from terminal.outbox.schedule import Backoff, Schedule
from terminal.outbox.table import OutboxRow, rows, settle_held
from tests.outbox_lab import FakeDestination, FakeServer, add_records, drain, fast_loop
from tests.terminal_lab import REPO, taptill, write_config

T = TypeVar("T")


def _rig(tmp_path: Path) -> tuple[Journal, FakeServer]:
    return Journal.open(tmp_path / "journal.sqlite3"), FakeServer(tmp_path / "server.sqlite3")


def _run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


def _row(journal: Journal, ref: str) -> OutboxRow:
    (found,) = [r for r in rows(journal) if r.ref == ref]
    return found


# --- backoff and rate limit ----------------------------------------------------------------------------


def test_backoff_stays_between_half_and_all_of_its_step_and_under_the_maximum() -> None:
    backoff = Backoff(base_s=0.5, max_s=60.0)
    rng = random.Random(7)
    for attempts in range(0, 40):
        step = min(60.0, 0.5 * 2**attempts)
        delays = [backoff.delay_s(attempts, rng) for _ in range(300)]
        assert all(step / 2 <= d <= step for d in delays), attempts
        assert max(delays) - min(delays) > step / 10, "no jitter"
    assert backoff.delay_s(0, rng, at_least_s=30.0) == 30.0  # a server's Retry-After is a floor
    assert backoff.delay_s(20, rng, at_least_s=90.0) == 90.0


def test_a_schedule_holds_a_record_back_until_its_time_and_says_when_the_next_is_due() -> None:
    now = [0.5]  # a monotonic clock may start anywhere, 0 included
    schedule = Schedule(monotonic=lambda: now[0])
    assert schedule.due(1) and schedule.next_in_s() is None  # never held back: due at once
    schedule.wait([1], 1.5)
    schedule.wait([2], 4.5)
    assert not schedule.due(1) and schedule.next_in_s() == 1.5
    now[0] = 2.0
    assert schedule.due(1) and not schedule.due(2)  # due at its time exactly
    assert schedule.next_in_s() == 3.0  # the due record no longer counts as waiting
    schedule.forget([2, 3])
    assert schedule.due(2) and schedule.next_in_s() is None
    assert schedule.retry_delay_s(0, at_least_s=30.0) == 30.0  # a server's Retry-After is a floor


@pytest.mark.parametrize(
    ("result", "ended"),
    [
        (Done(), True),
        (Rejected("bad"), True),
        (Booked(), True),
        (GaveUp("at most once"), True),
        (NotBooked(send_again=False), True),
        (NotBooked(send_again=True), False),  # sent again: the record goes on
        (Unclear("held"), False),
        (Wait(1.0, "later"), False),
        (Ambiguous("timeout"), False),
        (Unreachable("refused"), False),
        (Each(((("a",), Wait(1.0, "later")), (("b",), Done()))), True),
        (Each(((("a",), Wait(1.0, "later")),)), False),
    ],
)
def test_a_record_is_settled_only_by_an_answer_that_ends_it(result: object, ended: bool) -> None:
    """The loop looks again at once after a record ended; after anything else it would spin."""
    assert settled(result) is ended  # type: ignore[arg-type]


def test_a_landing_window_counts_from_a_records_latest_request_or_else_from_the_start() -> None:
    """A destination with no idempotency key looks whether a request landed only once it no longer can:
    the client's deadline plus slack after that record's latest request, or after this process started
    for a record it never sent (its request may be from before a restart)."""
    now = [100.0]
    window = LandingWindow(timeout_s=5.0, monotonic=lambda: now[0])
    now[0] = 103.0
    assert window.wait_s(1) == 5.0 + SLACK_S - 3.0  # never sent here: from the start
    window.sent(1)
    now[0] = 104.0
    assert window.wait_s(1) == 5.0 + SLACK_S - 1.0  # from its request, not the start
    assert window.wait_s(2) == 5.0 + SLACK_S - 4.0  # another record keeps counting from the start
    window.forget([1, 3])  # a record never sent is forgotten quietly
    assert window.wait_s(1) == window.wait_s(2)


def test_a_token_bucket_never_lets_more_through_than_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(capacity=5, per_s=1.0, monotonic=lambda: now[0])
    rng = random.Random(3)
    taken: list[float] = []
    for _ in range(20_000):
        now[0] += rng.choice((0.0, 0.001, 0.01, 0.1, 0.5, 2.0))
        if bucket.take():
            taken.append(now[0])
        elif rng.random() < 0.01:
            bucket.block(rng.uniform(1, 60))
    assert len(taken) > 1000
    # In any window of w seconds at most capacity + rate * w requests went out.
    for i, start in enumerate(taken):
        for w in (0.0, 1.0, 10.0, 60.0):
            count = sum(1 for t in taken[i : i + 200] if t <= start + w)
            assert count <= 5 + 1.0 * w, (start, w, count)


def test_a_token_bucket_lets_its_capacity_go_at_once_then_one_per_refill() -> None:
    now = [0.5]  # a monotonic clock may start anywhere, 0 included
    bucket = TokenBucket(capacity=3, per_s=0.5, monotonic=lambda: now[0])
    assert bucket.wait_s() == 0.0  # "now", never a negative wait
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_s() == 2.0  # a whole request refills in 1 / per_s seconds
    now[0] = 1.5
    assert bucket.wait_s() == 1.0 and not bucket.take()
    now[0] = 2.5
    assert bucket.take() and not bucket.take()


def test_a_block_empties_the_bucket_so_requests_resume_at_the_refill_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(capacity=5, per_s=0.1, monotonic=lambda: now[0])
    bucket.block(1.0)
    now[0] = 1.0
    assert bucket.wait_s() == pytest.approx(9.0)  # the block is over; the bucket refills from empty


@pytest.mark.parametrize(("capacity", "per_s"), [(0.5, 1.0), (1, 0.0), (0.5, 0.0)])
def test_a_token_bucket_that_would_never_let_a_request_through_is_refused(
    capacity: float, per_s: float
) -> None:
    with pytest.raises(ValueError) as refused:
        TokenBucket(capacity, per_s)
    assert str(refused.value) == "a token bucket needs capacity >= 1 and a refill rate > 0 per second"


def test_a_blocked_bucket_lets_nothing_through_until_the_block_ends() -> None:
    now = [100.0]
    bucket = TokenBucket(capacity=60, per_s=1.0, monotonic=lambda: now[0])
    bucket.block(60.0)
    assert bucket.wait_s() == pytest.approx(60.0)
    now[0] += 59.9
    assert not bucket.take()
    now[0] += 0.2
    assert bucket.take()


# --- every classification, through the loop's step, into the journal ----------------------------------


@pytest.mark.parametrize(
    ("word", "state", "maybe_sent", "applied", "scheduled"),
    [
        ("done", "done", False, 1, False),
        ("reject", "rejected", False, 0, False),
        ("lost", "pending", True, 1, True),
        ("timeout", "pending", True, 0, True),
        ("error", "pending", True, 0, True),
        ("refused", "pending", False, 0, True),
        ("429", "pending", False, 0, True),
    ],
)
def test_each_answer_is_applied_through_the_store(
    tmp_path: Path, word: str, state: str, maybe_sent: bool, applied: int, scheduled: bool
) -> None:
    journal, server = _rig(tmp_path)
    add_records(journal, 1)
    destination = FakeDestination(journal, server, answers={"r0": [word]})
    loop = fast_loop(destination)
    # The schedule's clock stands still: the checks below see the waits the step set, however long a
    # loaded machine takes between the step and the checks (a 10 ms backoff could be over by then).
    frozen = loop.schedule.monotonic()
    loop.schedule.monotonic = lambda: frozen

    async def scenario() -> None:
        await loop.deliver(destination.store.due(10))

    _run(scenario)
    row = _row(journal, "r0")
    assert (row.state, row.maybe_sent, row.attempts) == (state, maybe_sent, 1)
    assert server.count("r0") == applied
    assert (not loop.schedule.due(row.id)) == scheduled, "a retry waits; a finished record is forgotten"
    if word == "reject":
        assert row.reason == "bad: 400: no such thing"
    if word == "error":
        assert row.reason  # the note for people says what happened
    if word == "429":
        assert loop.idle_wait_s() >= 0.01 and loop._blocked_s() > 0, "a 429 pauses the whole destination"
    journal.close()


@pytest.mark.parametrize(
    ("rule", "state", "held", "applied"),
    [("lookup", "done", False, 1), ("give_up", "ambiguous", False, 1), ("unclear", "pending", True, 1)],
)
def test_a_maybe_applied_record_is_settled_by_the_destinations_rule_before_any_resend(
    tmp_path: Path, rule: str, state: str, held: bool, applied: int
) -> None:
    journal, server = _rig(tmp_path)
    add_records(journal, 1)
    destination = FakeDestination(journal, server, answers={"r0": ["lost"]}, settle_rule=rule)
    loop = fast_loop(destination)

    async def scenario() -> object:
        first = await loop.deliver(destination.store.due(10))
        return first, await loop.deliver(destination.store.due(10))

    results = _run(scenario)
    row = _row(journal, "r0")
    assert (row.state, row.hold) == (state, held)
    assert server.count("r0") == applied and destination.sent == [("r0",)], "settled, never sent again"
    assert type(results[1]) is {"lookup": Booked, "give_up": GaveUp, "unclear": Unclear}[rule]  # type: ignore[index]
    assert destination.store.due(10) == [], "held or finished: not due"
    journal.close()


def test_not_booked_sends_again_and_a_wait_comes_back_later(tmp_path: Path) -> None:
    journal, server = _rig(tmp_path)
    add_records(journal, 1)
    destination = FakeDestination(journal, server, answers={"r0": ["timeout"]}, settle_rule="wait")
    loop = fast_loop(destination)
    now = [loop.schedule.monotonic()]  # the schedule's clock moves only when the test says (not with load)
    loop.schedule.monotonic = lambda: now[0]

    async def scenario() -> list[object]:
        out: list[object] = [await loop.deliver(destination.store.due(10))]
        out.append(await loop.deliver(destination.store.due(10)))  # too early: Wait
        assert not loop.schedule.due(_row(journal, "r0").id)
        now[0] += 0.06
        out.append(await loop.deliver(destination.store.due(10)))  # not applied: sent again, done
        return out

    results = _run(scenario)
    assert isinstance(results[1], Wait) and isinstance(results[2], Done)
    assert destination.settles == ["r0", "r0"] and destination.sent == [("r0",), ("r0",)]
    assert _row(journal, "r0").state == "done" and server.count("r0") == 1
    journal.close()


def test_a_batch_whose_records_end_differently_applies_each_part(tmp_path: Path) -> None:
    journal, server = _rig(tmp_path)
    add_records(journal, 3)
    destination = FakeDestination(
        journal, server, answers={"r1": ["reject"], "r2": ["refused"]}, batches=True
    )
    loop = fast_loop(destination)

    async def scenario() -> None:
        await loop.deliver(destination.store.due(10))

    _run(scenario)
    assert destination.sent == [("r0", "r1", "r2")], "one request for the batch"
    assert [r.state for r in rows(journal)] == ["done", "rejected", "pending"]
    assert [r.maybe_sent for r in rows(journal)] == [False, False, False]
    journal.close()


def test_a_lane_is_never_in_flight_twice(tmp_path: Path) -> None:
    journal, server = _rig(tmp_path)
    add_records(journal, 1)
    destination = FakeDestination(journal, server, answer_after_s=0.2)
    loop = fast_loop(destination)

    async def scenario() -> list[object]:
        due = destination.store.due(10)
        return list(await asyncio.gather(loop.deliver(due), loop.deliver(due)))

    results = _run(scenario)
    assert sorted(type(r).__name__ for r in results) == ["Done", "Stalled"]
    assert server.count("r0") == 1
    journal.close()


# --- holds and settling by hand ------------------------------------------------------------------------


def test_a_held_record_waits_for_a_person_then_is_sent_again_or_marked_done(tmp_path: Path) -> None:
    journal, server = _rig(tmp_path)
    add_records(journal, 2)
    destination = FakeDestination(
        journal, server, answers={"r0": ["timeout"], "r1": ["timeout"]}, settle_rule="unclear"
    )
    loop = fast_loop(destination)

    async def twice() -> None:
        for _ in range(2):
            for record in destination.store.due(10):
                await loop.deliver([record])

    _run(twice)
    assert [(r.state, r.hold) for r in rows(journal)] == [("pending", True), ("pending", True)]
    assert not settle_held(journal, "r9", booked=True)
    assert settle_held(journal, "r0", booked=False) and settle_held(
        journal, f"#{_row(journal, 'r1').id}", booked=True
    )
    assert not settle_held(journal, "r1", booked=True), "settled once"
    destination.settle_rule = "lookup"

    _run(lambda: drain(loop, journal))
    assert [(r.state, r.reason) for r in rows(journal)] == [
        ("done", "applied"),
        ("done", "settled by hand: applied"),
    ]
    assert server.refs() == ["r0"], "sent again once; the one marked done by hand never"
    journal.close()


def test_queue_status_and_settle_show_and_settle_another_destinations_held_record(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
    journal, server = _rig(config.parent / "state")
    add_records(journal, 1)
    destination = FakeDestination(journal, server, answers={"r0": ["timeout"]}, settle_rule="unclear")
    loop = fast_loop(destination)

    async def twice() -> None:
        await loop.deliver(destination.store.due(10))
        await loop.deliver(destination.store.due(10))

    _run(twice)
    journal.close()
    queue = taptill("queue", "--config", str(config)).stdout
    assert "HELD" in queue and "fake" in queue and "ref r0" in queue and "cannot tell" in queue
    status = json.loads(taptill("status", "--json", "--config", str(config)).stdout)
    by_name = {d["destination"]: d for d in status["destinations"]}
    assert (
        by_name["fake"]["held"] == 1
        and by_name["fake"]["ambiguous"] == 1
        and by_name["wallet"]["pending"] == 0
    )
    assert "outbox:          fake: 1 pending, 1 held" in taptill("status", "--config", str(config)).stdout
    doctor = taptill("doctor", "--config", str(config), check=False).stdout
    assert any(
        line.startswith("WARN outbox") and "fake: 1 pending, 1 held" in line for line in doctor.splitlines()
    )
    out = taptill("settle", "r0", "--booked", "--config", str(config)).stdout
    assert "marked done" in out
    again = taptill("settle", "r0", "--booked", "--config", str(config), check=False)
    assert again.returncode == 1 and "no held sale or outbox record with key r0" in again.stderr
    assert "queue empty" in taptill("queue", "--config", str(config)).stdout


# --- the loop always awaits ------------------------------------------------------------------------------


def test_the_loop_never_spins_while_an_answer_arrives_late(tmp_path: Path) -> None:
    """One record is in flight (its answer comes after a second); the other is its lane's next: nothing is
    due. The loop must wait between passes, so the event loop keeps turning and reads the late answer."""
    journal, server = _rig(tmp_path)
    add_records(journal, 1)
    destination = FakeDestination(journal, server, answer_after_s=1.0)
    loop = DeliveryLoop(destination, min_pause_s=0.2, idle_look_s=2.0)
    turns = [0]
    lags: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)
            turns[0] += 1

    async def scenario() -> float:
        stop = asyncio.Event()
        tick = asyncio.ensure_future(ticker(stop))
        started = time.monotonic()
        in_flight = asyncio.ensure_future(loop.deliver(destination.store.due(10)))  # the "tap path"
        await asyncio.sleep(0)
        run = asyncio.ensure_future(loop.run(stop))
        result = await in_flight
        assert isinstance(result, Done)
        elapsed = time.monotonic() - started
        stop.set()
        await asyncio.gather(run, tick)
        return elapsed

    elapsed = _run(scenario)
    assert elapsed >= 1.0
    # Between passes at least min_pause_s: a spinning loop would make thousands (and starve the ticker).
    assert loop.passes <= elapsed / 0.2 + 3, (loop.passes, elapsed)
    assert turns[0] >= 10, "the event loop hardly turned"
    assert sorted(lags)[len(lags) // 2] < 0.2, "the event loop was held up between passes"
    assert server.count("r0") == 1
    journal.close()


def test_a_rate_limited_destination_never_exceeds_its_bucket(tmp_path: Path) -> None:
    journal, server = _rig(tmp_path)
    add_records(journal, 40)
    reads: list[float] = []

    def clock() -> float:
        reads.append(time.monotonic())
        return reads[-1]

    class Counted(TokenBucket):
        taken: ClassVar[list[float]] = []

        def take(self) -> bool:
            ok = super().take()
            if ok:
                self.taken.append(reads[-1])
            return ok

    bucket = Counted(capacity=3, per_s=20.0, monotonic=clock)
    destination = FakeDestination(journal, server, rate_limit=bucket)
    loop = DeliveryLoop(destination, min_pause_s=0.01, idle_look_s=0.05)

    _run(lambda: drain(loop, journal))
    assert len(destination.sent) == 40 == len(bucket.taken), "every request took a token"
    taken = bucket.taken
    for i, start in enumerate(taken):
        for w in (0.0, 0.1, 0.5, 1.0):
            count = sum(1 for t in taken[i:] if t <= start + w)
            assert count <= 3 + 20.0 * w, (w, count)
    journal.close()


# --- crash at every step ---------------------------------------------------------------------------------

CRASHES = [
    ("outbox_after_settle", 1),
    ("outbox_after_settle", 2),
    ("outbox_after_begin", 1),
    ("outbox_after_begin", 4),
    ("outbox_after_attempt", 1),
    ("outbox_after_attempt", 2),
    ("outbox_after_attempt", 5),
    ("outbox_after_apply", 1),
    ("outbox_after_apply", 3),
]


def _deliver_process(tmp_path: Path, crash: str | None) -> int:
    env = {"PATH": "/usr/bin:/bin", **({"TAPTILL_CRASHPOINT": crash} if crash else {})}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.outbox_lab",
            str(tmp_path / "j.sqlite3"),
            str(tmp_path / "s.sqlite3"),
            "6",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return proc.returncode


@pytest.mark.parametrize(("point", "nth"), CRASHES, ids=[f"{p}:{n}" for p, n in CRASHES])
def test_a_kill_at_any_step_loses_nothing_and_doubles_nothing(tmp_path: Path, point: str, nth: int) -> None:
    assert _deliver_process(tmp_path, f"{point}:{nth}") == -9, "the crash point did not fire"
    assert _deliver_process(tmp_path, None) == 0
    journal = Journal.open(tmp_path / "j.sqlite3")
    server = FakeServer(tmp_path / "s.sqlite3")
    try:
        assert [(r.ref, r.state) for r in rows(journal)] == [(f"r{i}", "done") for i in range(6)]
        assert server.refs() == [f"r{i}" for i in range(6)], "each record applied exactly once"
    finally:
        server.close()
        journal.close()


# --- the migration that made the outbox table -------------------------------------------------------------


def test_an_old_journal_moves_its_partybroker_reports_into_the_outbox(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for version, script in enumerate(MIGRATIONS[:7]):
        db.executescript(script)
        db.execute(f"PRAGMA user_version = {version + 1}")
    db.execute(
        "INSERT INTO sales (idempotency_key, token_id, products, amount_cents, description, state,"
        " created_at, updated_at) VALUES (?, '04AA', '[\"espresso\"]', -250, 'K', 'done', 'a', 'b')",
        ("tKey00000000000000000000",),
    )
    for drink, qty, state in (
        ("espresso", 2, "sent"),
        ("beer", 1, "pending"),
        ("wine", 3, "ambiguous"),
        ("cola", 1, "dropped"),
    ):
        db.execute(
            "INSERT INTO reports (sale_id, drink_key, quantity, state, reason, created_at, updated_at)"
            " VALUES (1, ?, ?, ?, 'why', 'c', 'd')",
            (drink, qty, state),
        )
    db.close()
    journal = Journal.open(path)
    try:
        moved = rows(journal, "partybroker")
        assert [(r.payload, r.state, r.sale_id, r.reason) for r in moved] == [
            ({"drink_key": "espresso", "quantity": 2}, "done", 1, "why"),
            ({"drink_key": "beer", "quantity": 1}, "pending", 1, "why"),
            ({"drink_key": "wine", "quantity": 3}, "ambiguous", 1, "why"),
            ({"drink_key": "cola", "quantity": 1}, "rejected", 1, "why"),
        ]
        assert len({r.ref for r in moved}) == 4
        assert not journal.query("SELECT name FROM sqlite_master WHERE name = 'reports'")
        from terminal.partybroker.report_outbox import report_counts

        counts = report_counts(journal)
        assert (
            counts.pending,
            counts.sent_units,
            counts.ambiguous,
            counts.ambiguous_units,
            counts.dropped,
        ) == (
            1,
            2,
            1,
            3,
            1,
        )
    finally:
        journal.close()


def test_a_request_the_rate_limit_holds_back_changes_nothing(tmp_path: Path) -> None:
    journal, server = _rig(tmp_path)
    add_records(journal, 2)
    destination = FakeDestination(journal, server, rate_limit=TokenBucket(1, 0.001))
    loop = fast_loop(destination)

    async def scenario() -> list[object]:
        first, second = destination.store.due(10)
        return [await loop.deliver([first]), await loop.deliver([second])]

    first, second = _run(scenario)
    assert isinstance(first, Done) and second == Stalled("rate limited")
    held_back = _row(journal, "r1")
    assert (held_back.state, held_back.attempts, held_back.maybe_sent) == ("pending", 0, False)
    assert server.refs() == ["r0"] and loop.idle_wait_s() > 0.01
    journal.close()
