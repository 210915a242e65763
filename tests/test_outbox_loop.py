"""The delivery loop's own rules, on a real journal file with a scripted destination and stepped clocks:
what each answer writes through the store (and what an answer to settling, which is no request, must not
write), settling before any resend, what ``prepare`` gives the attempt, the rate limit and the server's
pause, lanes, the waits between passes, and a loop that outlives a full disk or a bug.

The store records each verb the loop calls on it before writing the outbox table: the verbs are the loop's
whole output (the wallet's store does more with some of them than the outbox table, e.g. ``by_settling``
and ``server_error``), so the tests compare them whole.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

import terminal.outbox.loop as loop_module
from terminal.journal import Journal, JournalError
from terminal.outbox.loop import DeliveryLoop
from terminal.outbox.outcome import (
    Ambiguous,
    Booked,
    Done,
    Each,
    GaveUp,
    NotBooked,
    Outcome,
    RateLimited,
    Rejected,
    Settled,
    Stalled,
    Unclear,
    Unreachable,
    Wait,
)
from terminal.outbox.rate_limit import TokenBucket
from terminal.outbox.schedule import Backoff, Schedule
from terminal.outbox.table import OutboxRow, OutboxTable, insert_statement, rows
from tests.outbox_lab import NAME, add_records

T = TypeVar("T")
WALL = 1_000_000.0  # the loop's wall clock (notes for people), frozen


class Store(OutboxTable):
    """The outbox table, noting each verb the loop calls (refs and arguments) before it writes; ``fail``:
    verb -> the JournalError it raises once instead of writing."""

    def __init__(self, journal: Journal) -> None:
        super().__init__(journal, NAME)
        self.calls: list[tuple[object, ...]] = []
        self.fail: dict[str, str] = {}
        self.reads = 0

    def _note(self, verb: str, records: Sequence[OutboxRow], *args: object) -> None:
        self.calls.append((verb, tuple(r.ref for r in records), *args))
        if verb in self.fail:
            raise JournalError(self.fail.pop(verb))

    def due(self, limit: int) -> Sequence[OutboxRow]:
        self.reads += 1
        if "due" in self.fail:
            raise JournalError(self.fail.pop("due"))
        return super().due(limit)

    def begin(self, records: Sequence[OutboxRow], basis: object) -> None:
        self._note("begin", records, basis)
        super().begin(records, basis)

    def done(self, records: Sequence[OutboxRow], result: object, *, by_settling: bool) -> None:
        self._note("done", records, result, by_settling)
        super().done(records, result, by_settling=by_settling)

    def rejected(self, records: Sequence[OutboxRow], reason: str, code: str) -> None:
        self._note("rejected", records, reason, code)
        super().rejected(records, reason, code)

    def not_sent(self, records: Sequence[OutboxRow]) -> None:
        self._note("not_sent", records)
        super().not_sent(records)

    def server_error(self, records: Sequence[OutboxRow], status: int) -> None:
        self._note("server_error", records, status)
        super().server_error(records, status)

    def note_retry(self, records: Sequence[OutboxRow], at_wall: float, reason: str) -> None:
        self._note("note_retry", records, at_wall, reason)
        super().note_retry(records, at_wall, reason)

    def hold(self, records: Sequence[OutboxRow], reason: str) -> None:
        self._note("hold", records, reason)
        super().hold(records, reason)

    def gave_up(self, records: Sequence[OutboxRow], reason: str) -> None:
        self._note("gave_up", records, reason)
        super().gave_up(records, reason)


class Scripted:
    """A destination answering as the test scripts it: ``answers`` per ref, one per attempt (Done when none
    is left), ``settles`` per ref, one per settling, ``prepared`` what ``prepare`` reads; records in
    ``not_ready`` are someone else's for now; an attempt waits for ``gate`` when set. ``asked`` lists
    every call in order."""

    name = NAME

    def __init__(self, journal: Journal, *, batches: bool = False, rate_limit: TokenBucket | None = None):
        self.store = Store(journal)
        self.batches = batches
        self.rate_limit = rate_limit
        self.answers: dict[str, list[Outcome]] = {}
        self.settles: dict[str, list[Settled | Outcome]] = {}
        self.prepared: object = None
        self.not_ready: set[str] = set()
        self.gate: asyncio.Event | None = None
        self.raises: Exception | None = None  # the next attempt raises it (a bug)
        self.asked: list[tuple[str, tuple[str, ...]]] = []
        self.forgotten: list[int] = []

    def lane(self, record: OutboxRow) -> str:
        return record.ref

    def ready(self, record: OutboxRow) -> bool:
        return record.ref not in self.not_ready

    def needs_settle(self, record: OutboxRow) -> bool:
        return record.maybe_sent

    def forget(self, record_ids: Sequence[int]) -> None:
        self.forgotten.extend(record_ids)

    async def settle(self, record: OutboxRow) -> Settled | Outcome:
        self.asked.append(("settle", (record.ref,)))
        return self.settles[record.ref].pop(0)

    async def prepare(self, batch: Sequence[OutboxRow]) -> object:
        self.asked.append(("prepare", tuple(r.ref for r in batch)))
        return self.prepared

    async def attempt(self, batch: Sequence[OutboxRow]) -> Outcome | Each:
        self.asked.append(("attempt", tuple(r.ref for r in batch)))
        if self.gate is not None:
            await self.gate.wait()
        if self.raises is not None:
            exc, self.raises = self.raises, None
            raise exc
        parts = tuple(((r,), (self.answers.get(r.ref) or [Done("applied")]).pop(0)) for r in batch)
        return parts[0][1] if len(parts) == 1 else Each(parts)

    def attempts(self) -> list[tuple[str, ...]]:
        return [refs for what, refs in self.asked if what == "attempt"]


class Longest(random.Random):
    """Jitter that always takes the whole step: attempt n waits exactly 1 s * 2**n."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Rig:
    """A journal with ``count`` pending records, a scripted destination, and the loop's clocks: the
    schedule's (monotonic) moves only when the test sets ``now``; the wall clock stands at WALL."""

    def __init__(self, tmp_path: Path, count: int, **destination: Any) -> None:
        self.journal = Journal.open(tmp_path / "journal.sqlite3")
        add_records(self.journal, count)
        self.dest = Scripted(self.journal, **destination)
        self.now = 0.5  # a monotonic clock may start anywhere, 0 included
        self.schedule = Schedule(Backoff(base_s=1.0, max_s=1000.0), rng=Longest(), monotonic=self.mono)

    def mono(self) -> float:
        return self.now

    def loop(self, **options: Any) -> DeliveryLoop[OutboxRow]:
        options.setdefault("min_pause_s", 0.01)
        options.setdefault("idle_look_s", 30.0)
        return DeliveryLoop(self.dest, schedule=self.schedule, clock=lambda: WALL, **options)

    def due(self, *refs: str) -> list[OutboxRow]:
        by_ref = {r.ref: r for r in self.dest.store.due(100)}
        return [by_ref[ref] for ref in refs]

    def maybe_sent(self, *refs: str, attempts: int = 1) -> None:
        """These records' earlier attempts may have been applied."""
        for _ in range(attempts):
            OutboxTable(self.journal, NAME).begin(self.due(*refs), None)

    def row(self, ref: str) -> OutboxRow:
        (found,) = [r for r in rows(self.journal) if r.ref == ref]
        return found

    def calls(self) -> list[tuple[object, ...]]:
        return self.dest.store.calls


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path, 3)
    yield made
    made.journal.close()


def _parts(result: object) -> list[tuple[tuple[str, ...], object]]:
    """A step's Each as (refs, outcome) parts."""
    assert isinstance(result, Each)
    return [(tuple(r.ref for r in records), part) for records, part in result.parts]


def _run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


async def _until(check: Callable[[], bool], timeout_s: float = 2.0) -> bool:
    """Let the event loop turn until ``check`` holds (True) or ``timeout_s`` passed (False)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


# --- what each answer to an attempt writes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "writes", "ended"),
    [
        (Done("applied"), [("done", ("r0",), "applied", False)], True),
        (
            Rejected("no such drink", "unknown_product"),
            [("rejected", ("r0",), "no such drink", "unknown_product")],
            True,
        ),
        (Ambiguous("timed out"), [("note_retry", ("r0",), WALL + 1.0, "timed out")], False),
        (
            Ambiguous("500 Internal Server Error", status=500),
            [
                ("server_error", ("r0",), 500),
                ("note_retry", ("r0",), WALL + 1.0, "500 Internal Server Error"),
            ],
            False,
        ),
        (
            Ambiguous("not sent: refused", may_have_applied=False),
            [("not_sent", ("r0",)), ("note_retry", ("r0",), WALL + 1.0, "not sent: refused")],
            False,
        ),
        (
            Unreachable("connection refused"),
            [("not_sent", ("r0",)), ("note_retry", ("r0",), WALL + 1.0, "connection refused")],
            False,
        ),
        (
            Unreachable("maintenance", retry_after_s=120.0),
            [("not_sent", ("r0",)), ("note_retry", ("r0",), WALL + 120.0, "maintenance")],
            False,
        ),
        (
            Ambiguous("busy", retry_after_s=90.0, status=503),
            [("server_error", ("r0",), 503), ("note_retry", ("r0",), WALL + 90.0, "busy")],
            False,
        ),
        (
            RateLimited(7.0, "slow down"),
            [("not_sent", ("r0",)), ("note_retry", ("r0",), WALL + 7.0, "slow down")],
            False,
        ),
    ],
)
def test_each_answer_to_an_attempt_is_written_through_the_store(
    rig: Rig, answer: Outcome, writes: list[tuple[object, ...]], ended: bool
) -> None:
    """The backoff of a first retry is 1 s (jitter taken out: the whole step); a server's
    Retry-After is a floor; a 429's wait is the server's. Settled records leave the schedule and the
    destination's memory; the others wait there for their retry."""
    rig.dest.answers["r0"] = [answer]
    loop = rig.loop()
    (r0,) = rig.due("r0")

    result = _run(lambda: loop.deliver([r0]))
    assert result == answer
    assert rig.calls() == [("begin", ("r0",), None), *writes]
    assert rig.dest.forgotten == ([r0.id] if ended else [])
    assert loop.schedule.due(r0.id) is ended
    row = rig.row("r0")
    assert (row.attempts, row.maybe_sent) == (1, not ended and writes[0][0] not in ("not_sent",))


def test_an_attempt_retries_with_the_backoff_of_the_records_earlier_attempts(rig: Rig) -> None:
    """Three attempts before this one: the fourth waits 1 s * 2**3 (jitter taken out)."""
    rig.maybe_sent("r0", attempts=3)
    rig.dest.settles["r0"] = [NotBooked(True)]
    rig.dest.answers["r0"] = [Ambiguous("timed out")]
    loop = rig.loop()

    _run(lambda: loop.deliver(rig.due("r0")))
    assert rig.calls()[-1] == ("note_retry", ("r0",), WALL + 8.0, "timed out")
    assert loop.idle_wait_s() == 8.0, "the loop looks again when it is due"


def test_a_429_pauses_the_whole_destination_and_empties_its_bucket(rig: Rig) -> None:
    bucket = TokenBucket(capacity=5, per_s=1.0, monotonic=rig.mono)
    rig.dest.rate_limit = bucket
    rig.dest.answers["r0"] = [RateLimited(7.0, "slow down")]
    loop = rig.loop()

    _run(lambda: loop.deliver(rig.due("r0")))
    assert loop.idle_wait_s() == 7.0, "no request to this server for the 7 s it asked"
    assert bucket.wait_s() == 7.0
    rig.now += 6.5
    assert loop.idle_wait_s() == 0.5


def test_a_later_429_with_a_shorter_wait_does_not_shorten_the_pause(rig: Rig) -> None:
    rig.dest.answers = {"r0": [RateLimited(60.0)], "r1": [RateLimited(1.0)]}
    loop = rig.loop()

    async def scenario() -> None:
        await loop.deliver(rig.due("r0"))
        await loop.deliver(rig.due("r1"))

    _run(scenario)
    assert loop._blocked_s() == 60.0, "still paused for the first 429's minute"


# --- settling before any resend -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "writes"),
    [
        (Booked("found"), [("done", ("r0",), "found", True)]),
        (
            NotBooked(False, "never arrived, sale refunded", code="refunded"),
            [("rejected", ("r0",), "never arrived, sale refunded", "refunded")],
        ),
        (Unclear("cannot tell"), [("hold", ("r0",), "cannot tell")]),
        (GaveUp("maybe applied: not sent again"), [("gave_up", ("r0",), "maybe applied: not sent again")]),
        (Wait(3.0, "too early to tell"), [("note_retry", ("r0",), WALL + 3.0, "too early to tell")]),
        # Settling asks no request of its own: an answer cannot prove the attempt before never arrived,
        # so the record stays maybe sent and is settled again next time, never simply sent again.
        (Unreachable("lookup refused"), [("note_retry", ("r0",), WALL + 2.0, "lookup refused")]),
        (
            Ambiguous("lookup failed", may_have_applied=False),
            [("note_retry", ("r0",), WALL + 2.0, "lookup failed")],
        ),
        (Ambiguous("lookup: 500", status=500), [("note_retry", ("r0",), WALL + 2.0, "lookup: 500")]),
        (RateLimited(4.0, "slow down"), [("note_retry", ("r0",), WALL + 4.0, "slow down")]),
    ],
)
def test_a_maybe_sent_record_is_settled_and_not_sent_unless_settling_says_so(
    rig: Rig, answer: Settled | Outcome, writes: list[tuple[object, ...]]
) -> None:
    rig.maybe_sent("r0")
    rig.dest.settles["r0"] = [answer]
    loop = rig.loop()
    (r0,) = rig.due("r0")

    result = _run(lambda: loop.deliver([r0]))
    assert result == answer
    assert rig.dest.asked == [("settle", ("r0",))], "settled, not sent"
    assert rig.calls() == writes
    row = rig.row("r0")
    assert (row.maybe_sent, row.attempts) == (row.state not in ("done", "rejected"), 1)


def test_not_booked_sends_again_on_what_settling_read_without_preparing(rig: Rig) -> None:
    rig.maybe_sent("r0")
    rig.dest.settles["r0"] = [NotBooked(True, basis={"balance": 500})]
    rig.dest.prepared = "should not be read"
    loop = rig.loop()

    result = _run(lambda: loop.deliver(rig.due("r0")))
    assert result == Done("applied")
    assert rig.dest.asked == [("settle", ("r0",)), ("attempt", ("r0",))]
    assert rig.calls() == [("begin", ("r0",), {"balance": 500}), ("done", ("r0",), "applied", False)]
    assert (rig.row("r0").state, rig.row("r0").attempts) == ("done", 2)


def test_a_fresh_record_is_sent_on_what_prepare_read(rig: Rig) -> None:
    rig.dest.prepared = {"balance": 1200}
    loop = rig.loop()

    result = _run(lambda: loop.deliver(rig.due("r0")))
    assert result == Done("applied")
    assert rig.dest.asked == [("prepare", ("r0",)), ("attempt", ("r0",))]
    assert rig.calls()[0] == ("begin", ("r0",), {"balance": 1200})


@pytest.mark.parametrize(
    ("prepared", "writes"),
    [
        (Unreachable("balance unreadable"), [("note_retry", ("r0",), WALL + 1.0, "balance unreadable")]),
        (Ambiguous("balance: 500", status=500), [("note_retry", ("r0",), WALL + 1.0, "balance: 500")]),
        (Rejected("card blocked", "blocked"), [("rejected", ("r0",), "card blocked", "blocked")]),
    ],
)
def test_a_prepare_that_fails_sends_nothing_and_notes_no_request(
    rig: Rig, prepared: Outcome, writes: list[tuple[object, ...]]
) -> None:
    rig.dest.prepared = prepared
    loop = rig.loop()

    result = _run(lambda: loop.deliver(rig.due("r0")))
    assert result == prepared
    assert rig.dest.asked == [("prepare", ("r0",))]
    assert rig.calls() == writes, "no begin, and no request to call not sent or a server error"
    assert rig.row("r0").attempts == 0


def test_a_step_settles_every_maybe_sent_record_and_sends_the_rest_in_one_answer(rig: Rig) -> None:
    rig.maybe_sent("r1")
    rig.dest.settles["r1"] = [Booked("found")]
    loop = rig.loop()

    result = _run(lambda: loop.deliver(rig.due("r0", "r1", "r2")))
    r0, r1, r2 = (rig.row(ref) for ref in ("r0", "r1", "r2"))
    assert rig.dest.asked == [("settle", ("r1",)), ("prepare", ("r0", "r2")), ("attempt", ("r0", "r2"))]
    assert _parts(result) == [
        (("r1",), Booked("found")),
        (("r0",), Done("applied")),
        (("r2",), Done("applied")),
    ]
    assert [r.state for r in (r0, r1, r2)] == ["done", "done", "done"]


def test_a_step_of_only_settled_records_sends_nothing(rig: Rig) -> None:
    rig.maybe_sent("r0", "r1")
    rig.dest.settles = {"r0": [Booked("found")], "r1": [GaveUp("at most once")]}
    loop = rig.loop()

    result = _run(lambda: loop.deliver(rig.due("r0", "r1")))
    assert _parts(result) == [(("r0",), Booked("found")), (("r1",), GaveUp("at most once"))]
    assert rig.dest.asked == [("settle", ("r0",)), ("settle", ("r1",))]
    assert [r.state for r in rows(rig.journal)] == ["done", "ambiguous", "pending"]


def test_the_rate_limit_stops_settling_too_and_keeps_what_was_settled(rig: Rig) -> None:
    rig.dest.rate_limit = TokenBucket(capacity=1, per_s=0.001, monotonic=rig.mono)
    rig.maybe_sent("r0", "r1")
    rig.dest.settles = {"r0": [Booked("found")], "r1": [Booked("found")]}
    loop = rig.loop()

    result = _run(lambda: loop.deliver(rig.due("r0", "r1")))
    assert _parts(result) == [(("r0",), Booked("found")), ((), Stalled("rate limited"))]
    assert rig.dest.asked == [("settle", ("r0",))], "the lookup is a request too: one token, one lookup"
    assert [(r.state, r.maybe_sent) for r in rows(rig.journal)][:2] == [("done", False), ("pending", True)]


def test_the_rate_limit_holds_back_a_lone_lookup(rig: Rig) -> None:
    rig.dest.rate_limit = TokenBucket(capacity=1, per_s=0.001, monotonic=rig.mono)
    rig.dest.rate_limit.take()
    rig.maybe_sent("r0")
    loop = rig.loop()

    assert _run(lambda: loop.deliver(rig.due("r0"))) == Stalled("rate limited")
    assert rig.dest.asked == [] and rig.calls() == []


def test_the_tap_paths_attempt_goes_straight_out(rig: Rig) -> None:
    """``begun``: the caller journaled the attempt already (the wallet's tap), so no settling, no prepare,
    no second begin."""
    rig.maybe_sent("r0")
    loop = rig.loop()

    assert _run(lambda: loop.deliver(rig.due("r0"), begun=True)) == Done("applied")
    assert rig.dest.asked == [("attempt", ("r0",))]
    assert rig.calls() == [("done", ("r0",), "applied", False)]
    assert rig.row("r0").attempts == 1


# --- lanes, a full disk, and who is told --------------------------------------------------------------------


def test_each_lane_is_busy_only_while_its_own_request_is_under_way(rig: Rig) -> None:
    rig.dest.gate = asyncio.Event() if False else None  # set inside the event loop below
    loop = rig.loop()

    async def scenario() -> list[object]:
        gate = rig.dest.gate = asyncio.Event()
        first = asyncio.ensure_future(loop.deliver(rig.due("r0")))
        second = asyncio.ensure_future(loop.deliver(rig.due("r1")))
        await asyncio.sleep(0.01)
        busy = [loop.busy("r0"), loop.busy("r1"), loop.busy("r2")]
        again = asyncio.ensure_future(loop.deliver(rig.due("r0")))
        await asyncio.sleep(0.01)
        gate.set()
        done = list(await asyncio.gather(first, second, again))
        return [busy, done, [loop.busy("r0"), loop.busy("r1")]]

    busy, done, after = _run(scenario)
    assert busy == [True, True, False]
    assert done == [Done("applied"), Done("applied"), Stalled("another request for this lane is under way")]
    assert after == [False, False], "a finished lane is free again"
    assert rig.dest.attempts() == [("r0",), ("r1",)]


def test_a_journal_that_cannot_record_the_answer_stalls_the_step_says_the_answer_and_frees_its_lane(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.dest.store.fail["done"] = "disk I/O error"
    rig.dest.answers = {"r1": [Rejected("no such product", "bad_product")]}
    rig.dest.store.fail["rejected"] = "database or disk is full"
    told: list[str] = []
    loop = rig.loop(on_settled=lambda: told.append("settled"))

    # The request went out and was answered: the answer comes back with the stall (a guest whose debit
    # was booked is served), while the record stays as begin left it, to settle once the journal works.
    result = _run(lambda: loop.deliver(rig.due("r0")))
    assert result == Stalled("disk I/O error", storage=True, answer=Done("applied"))
    refused = _run(lambda: loop.deliver(rig.due("r1")))
    assert refused == Stalled(
        "database or disk is full", storage=True, answer=Rejected("no such product", "bad_product")
    )
    assert rig.row("r0").maybe_sent and rig.row("r0").state == "pending"
    assert not loop.busy("r0") and not loop.busy("r1") and told == []
    assert [r.getMessage() for r in caplog.records if r.name == "terminal.outbox.loop"] == [
        "fake: the server answered Done, but the journal cannot record it: disk I/O error",
        "fake: the server answered Rejected, but the journal cannot record it: database or disk is full",
    ]


def test_a_journal_that_cannot_note_the_request_sends_nothing_and_stalls_without_an_answer(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.dest.store.fail["begin"] = "disk I/O error"
    loop = rig.loop()

    result = _run(lambda: loop.deliver(rig.due("r0")))
    assert result == Stalled("disk I/O error", storage=True)
    assert rig.dest.attempts() == [] and not loop.busy("r0")
    assert [r.getMessage() for r in caplog.records if r.name == "terminal.outbox.loop"] == [
        "fake: cannot journal the outcome of 1 record(s): disk I/O error"
    ]


def test_whoever_waits_for_a_settled_record_is_told_once_per_step_that_settled(rig: Rig) -> None:
    rig.dest.answers = {"r1": [Unreachable("refused")]}
    told: list[str] = []
    loop = rig.loop(on_settled=lambda: told.append("settled"))

    async def scenario() -> None:
        await loop.deliver(rig.due("r0"))
        await loop.deliver(rig.due("r1"))

    _run(scenario)
    assert told == ["settled"]


# --- how long the loop waits between passes ----------------------------------------------------------------


def test_the_idle_wait_is_the_next_due_record_or_the_pause_between_the_floor_and_the_idle_look(
    rig: Rig,
) -> None:
    loop = rig.loop(min_pause_s=0.1, idle_look_s=2.0)
    assert loop.idle_wait_s() == 2.0, "nothing waits and nothing blocks: look again at the idle look"
    ids = [r.id for r in rig.due("r0", "r1")]
    loop.schedule.wait([ids[0]], 5.0)
    assert loop.idle_wait_s() == 2.0
    loop.schedule.wait([ids[1]], 0.7)
    assert loop.idle_wait_s() == 0.7
    rig.now += 0.65
    assert loop.idle_wait_s() == 0.1, "never less than the floor"


def test_a_bucket_that_is_empty_makes_the_loop_wait_for_its_refill(rig: Rig) -> None:
    rig.dest.rate_limit = TokenBucket(capacity=1, per_s=2.0, monotonic=rig.mono)
    loop = rig.loop(min_pause_s=0.01, idle_look_s=2.0)
    assert loop.idle_wait_s() == 2.0
    rig.dest.rate_limit.take()
    assert loop.idle_wait_s() == 0.5


# --- the background loop ----------------------------------------------------------------------------------


async def _start(loop: DeliveryLoop[OutboxRow]) -> tuple[asyncio.Event, asyncio.Future[None]]:
    stop = asyncio.Event()
    return stop, asyncio.ensure_future(loop.run(stop))


async def _stop(stop: asyncio.Event, task: asyncio.Future[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, 1.0)


def test_the_loop_sends_each_due_record_its_own_request_and_skips_those_not_ready(rig: Rig) -> None:
    rig.dest.not_ready = {"r1"}
    loop = rig.loop()

    async def scenario() -> None:
        stop, task = await _start(loop)
        assert await _until(lambda: rig.row("r2").state == "done")
        await asyncio.sleep(0.05)
        await _stop(stop, task)

    _run(scenario)
    assert rig.dest.attempts() == [("r0",), ("r2",)]
    assert rig.row("r1").state == "pending", "someone else owns it for now"


def test_a_batching_destination_sends_every_due_record_in_one_request(tmp_path: Path) -> None:
    rig = Rig(tmp_path, 3, batches=True)
    loop = rig.loop()

    async def scenario() -> None:
        stop, task = await _start(loop)
        assert await _until(lambda: rig.row("r2").state == "done")
        await _stop(stop, task)

    _run(scenario)
    assert rig.dest.attempts() == [("r0", "r1", "r2")]
    rig.journal.close()


def test_one_failing_record_does_not_hold_back_the_others_of_its_pass(rig: Rig) -> None:
    rig.dest.answers = {"r0": [Unreachable("refused", retry_after_s=60.0)]}
    loop = rig.loop()

    async def scenario() -> None:
        stop, task = await _start(loop)
        assert await _until(lambda: rig.row("r2").state == "done", 1.0)
        await _stop(stop, task)

    _run(scenario)
    assert rig.dest.attempts() == [("r0",), ("r1",), ("r2",)]
    assert loop.passes == rig.dest.store.reads, "each pass reads the due records once"


def test_after_a_429_the_loop_sends_nothing_until_the_pause_is_over(rig: Rig) -> None:
    rig.dest.answers = {"r0": [RateLimited(0.2)]}
    loop = rig.loop()

    async def scenario() -> list[tuple[str, ...]]:
        stop, task = await _start(loop)
        assert await _until(lambda: rig.dest.attempts() != [])
        await asyncio.sleep(
            0.35
        )  # the loop looks again after 0.2 s: the pause is not over (its clock stands)
        during = rig.dest.attempts()
        rig.now += 0.2
        loop.wake()
        assert await _until(lambda: rig.row("r0").state == "done")
        await _stop(stop, task)
        return during

    assert _run(scenario) == [("r0",)], "r1 and r2 wait out the server's pause"
    assert sorted(rig.dest.attempts()) == [("r0",), ("r0",), ("r1",), ("r2",)]


def test_a_loop_that_settled_something_looks_again_at_once(rig: Rig) -> None:
    """r0 is done and r1 fails (its retry is far off): the round settled something, so the loop looks
    again at once, after letting others run, and finds r3, journaled meanwhile (no wake)."""
    rig.dest.answers = {"r1": [Unreachable("refused", retry_after_s=60.0)]}
    rig.dest.not_ready = {"r2"}
    loop = rig.loop()

    async def scenario() -> None:
        settled = asyncio.Event()
        loop.on_settled = settled.set

        async def journal_one_more() -> None:
            await settled.wait()
            rig.journal.execute_all([insert_statement(NAME, "r3", {"n": 3})])

        extra = asyncio.ensure_future(journal_one_more())
        stop, task = await _start(loop)
        assert await _until(lambda: rig.dest.attempts()[-1:] == [("r3",)], 0.5), (
            "the loop paused before looking again"
        )
        await extra
        await _stop(stop, task)

    _run(scenario)
    assert rig.dest.attempts() == [("r0",), ("r1",), ("r3",)]


def test_a_woken_loop_looks_at_once_and_a_stopped_one_ends_at_once(rig: Rig) -> None:
    rig.dest.not_ready = {"r0", "r1", "r2"}
    loop = rig.loop(idle_look_s=30.0)

    async def scenario() -> None:
        stop, task = await _start(loop)
        await asyncio.sleep(0.05)
        rig.dest.not_ready = set()
        loop.wake()
        assert await _until(lambda: rig.row("r2").state == "done", 1.0), "woken: no need to wait 30 s"
        await asyncio.sleep(0.05)
        await _stop(stop, task)

    _run(scenario)


def test_an_offline_destination_is_probed_and_sent_nothing_until_it_is_back(rig: Rig) -> None:
    online = [False]
    probes: list[float] = []

    async def probe() -> bool:
        probes.append(rig.now)
        return online[0]

    loop = rig.loop(online=lambda: online[0], probe=probe, probe_interval_s=0.02)

    async def scenario() -> None:
        stop, task = await _start(loop)
        assert await _until(lambda: len(probes) >= 3)
        assert rig.dest.asked == []
        online[0] = True
        assert await _until(lambda: rig.row("r2").state == "done")
        await _stop(stop, task)

    _run(scenario)
    assert rig.dest.attempts() == [("r0",), ("r1",), ("r2",)]


def test_an_offline_loop_without_a_probe_waits_for_the_breaker_to_close(rig: Rig) -> None:
    online = [False]
    loop = rig.loop(online=lambda: online[0], probe_interval_s=0.02)

    async def scenario() -> None:
        stop, task = await _start(loop)
        await asyncio.sleep(0.1)
        assert rig.dest.asked == [] and not task.done()
        online[0] = True
        assert await _until(lambda: rig.row("r2").state == "done")
        await _stop(stop, task)

    _run(scenario)


@pytest.mark.parametrize("where", ["due", "done"])
def test_a_loop_outlives_a_full_disk_and_tries_again_after_a_pause(
    rig: Rig, where: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop_module, "STORAGE_PAUSE_S", 0.05)
    rig.dest.store.fail[where] = "disk full"
    rig.dest.settles["r0"] = [Booked("applied")]  # its request went out before the journal failed
    loop = rig.loop()

    async def scenario() -> None:
        stop, task = await _start(loop)
        assert await _until(lambda: rig.row("r2").state == "done")
        await _stop(stop, task)

    with caplog.at_level(logging.ERROR, logger="terminal.outbox.loop"):
        _run(scenario)
    logged = [r.getMessage() for r in caplog.records if r.name == "terminal.outbox.loop"]
    if where == "done":
        assert logged == [
            "fake: the server answered Done, but the journal cannot record it: disk full",
            "fake outbox paused: disk full",
        ]
    else:
        assert logged == ["fake outbox paused: disk full"]
    assert [r.state for r in rows(rig.journal)] == ["done"] * 3


def test_a_loop_outlives_a_bug_and_tries_again_after_a_pause(
    rig: Rig, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop_module, "STORAGE_PAUSE_S", 0.05)
    rig.dest.raises = RuntimeError("a bug")
    rig.dest.settles["r0"] = [NotBooked(True)]
    loop = rig.loop()

    async def scenario() -> None:
        stop, task = await _start(loop)
        assert await _until(lambda: rig.row("r2").state == "done")
        await _stop(stop, task)

    with caplog.at_level(logging.ERROR, logger="terminal.outbox.loop"):
        _run(scenario)
    (logged,) = [r for r in caplog.records if r.name == "terminal.outbox.loop"]
    assert logged.getMessage() == "fake outbox pass failed; trying again shortly" and logged.exc_info
    assert rig.dest.asked[:3] == [("prepare", ("r0",)), ("attempt", ("r0",)), ("settle", ("r0",))]
    assert [r.state for r in rows(rig.journal)] == ["done"] * 3
