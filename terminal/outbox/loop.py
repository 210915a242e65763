"""The delivery loop: one per destination, sending its due records until the terminal stops.

The loop owns order, schedule and state changes; the destination only builds, sends and classifies
(``terminal.outbox.destination``). One step for a record (or a batch) is: settle it first if an earlier
attempt may have been applied, read what the attempt builds on (``prepare``), note durably that it may
be sent (``begin``), send (``attempt``), and apply the answer through the store. The tap path's first
attempt is the same step, entered after the sale was journaled as attempting (``begun``).

Every pass ends in a real wait (at least ``min_pause_s``) unless it settled something: a pass that finds
nothing it may send (a record in flight on the tap path, one waiting for its reconcile window) must never
go round again without letting the event loop read the answers it waits for (the outbox freeze found on
the real server was such a spin).

The crash points carry ``# pragma: no mutate`` (issue 18): they act only in the crash tests' subprocesses,
which import the unmutated tree; in-process a renamed point, or one without the destination's name, is the
same no-op, a mutant no test can kill.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic

from terminal.journal import JournalError
from terminal.outbox.destination import Destination, R
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
    parts_of,
    settled,
    settled_count,
)
from terminal.outbox.schedule import Schedule
from terminal.service.crashpoint import crashpoint

log = logging.getLogger(__name__)

MIN_PAUSE_S = 0.2  # the shortest wait between passes that settled nothing
PROBE_INTERVAL_S = 5.0  # while the circuit breaker is open, probe this often
IDLE_LOOK_S = 2.0  # look again at least this often: `taptill settle` changes the journal from outside
STORAGE_PAUSE_S = 5.0  # after the journal could not be written
BATCH_LIMIT = 50

Result = Outcome | Settled | Each
Part = tuple[tuple[Any, ...], Outcome | Settled]
_OUTCOMES = (Done, Rejected, Ambiguous, Unreachable, RateLimited, Stalled)


class _Unrecorded(Exception):
    """The server answered an attempt, and the journal could not record the answer."""

    def __init__(self, error: JournalError, answer: Outcome | Each) -> None:
        # No message of its own (Exception keeps the arguments): deliver turns it into a Stalled.
        self.error, self.answer = error, answer


class DeliveryLoop(Generic[R]):
    """Delivers one destination's records; ``online``/``probe`` are the circuit breaker (the wallet's)."""

    def __init__(
        self,
        destination: Destination[R],
        *,
        schedule: Schedule | None = None,
        online: Callable[[], bool] = lambda: True,
        probe: Callable[[], Awaitable[bool]] | None = None,
        probe_interval_s: float = PROBE_INTERVAL_S,
        on_settled: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        min_pause_s: float = MIN_PAUSE_S,
        idle_look_s: float = IDLE_LOOK_S,
        batch_limit: int = BATCH_LIMIT,
    ) -> None:
        self.destination = destination
        self.schedule = schedule or Schedule()
        self.online = online
        self.probe = probe
        self.probe_interval_s = probe_interval_s
        self.on_settled = on_settled
        self.clock = clock  # stamps the store's notes for people; never a schedule
        self.min_pause_s = min_pause_s
        self.idle_look_s = idle_look_s
        self.batch_limit = batch_limit
        self.in_flight: set[str] = set()  # lanes with a request under way
        self.passes = 0  # passes over the due records (for tests and benchmarks)
        self._paused_until = 0.0  # monotonic: the server said to wait (429) for every record
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def busy(self, lane: str) -> bool:
        return lane in self.in_flight

    # --- one step --------------------------------------------------------------------------------

    async def deliver(self, batch: Sequence[R], *, begun: bool = False) -> Result:
        """One step for ``batch`` (one record unless the destination batches). ``begun``: the caller has
        already journaled it as attempting (the tap path), so it goes straight to the attempt."""
        d = self.destination
        lanes = {d.lane(r) for r in batch}
        if lanes & self.in_flight:
            return Stalled("another request for this lane is under way")
        self.in_flight |= lanes
        try:
            result = await self._step(batch, begun)
        except _Unrecorded as unrecorded:
            log.error(
                "%s: the server answered %s, but the journal cannot record it: %s",
                d.name,
                type(unrecorded.answer).__name__,
                unrecorded.error,
            )
            result = Stalled(str(unrecorded.error), storage=True, answer=unrecorded.answer)
        except JournalError as exc:
            log.error("%s: cannot journal the outcome of %d record(s): %s", d.name, len(batch), exc)
            result = Stalled(str(exc), storage=True)
        finally:
            self.in_flight -= lanes
        if settled(result) and self.on_settled is not None:
            self.on_settled()
        return result

    async def _step(self, batch: Sequence[R], begun: bool) -> Result:
        d = self.destination
        ended: list[Part] = []
        todo = list(batch)
        basis: object = None
        if not begun:
            todo = []
            for record in batch:
                if not d.needs_settle(record):
                    todo.append(record)
                    continue
                if not self._may_send():
                    return _joined(ended, ((), Stalled("rate limited")))
                answer = await d.settle(record)
                crashpoint("outbox_after_settle", d.name)  # pragma: no mutate (see the module's docstring)
                self._apply((record,), answer, attempted=False)
                if isinstance(answer, NotBooked) and answer.send_again:
                    todo.append(record)
                    basis = answer.basis
                else:
                    ended.append(((record,), answer))
            if not todo:
                return _joined(ended)
            if basis is None:
                prepared = await d.prepare(todo)
                if isinstance(prepared, _OUTCOMES):
                    self._apply(todo, prepared, attempted=False)
                    return _joined(ended, *parts_of(todo, prepared))
                basis = prepared
            if not self._may_send():
                return _joined(ended, ((), Stalled("rate limited")))
            d.store.begin(todo, basis)
            crashpoint("outbox_after_begin", d.name)  # pragma: no mutate
        outcome = await d.attempt(todo)
        crashpoint("outbox_after_attempt", d.name)  # pragma: no mutate
        try:
            self._apply(todo, outcome, attempted=True)
        except JournalError as exc:
            raise _Unrecorded(exc, outcome) from None
        crashpoint("outbox_after_apply", d.name)  # pragma: no mutate
        return _joined(ended, *parts_of(todo, outcome))

    def _may_send(self) -> bool:
        bucket = self.destination.rate_limit
        return bucket is None or bucket.take()

    def _apply(self, records: Sequence[R], result: Result, *, attempted: bool) -> None:
        """Carry out ``result`` for ``records`` through the store and the schedule. ``attempted``: it is
        the answer to a request made after ``begin`` (only then can it prove the request never arrived)."""
        store = self.destination.store
        match result:
            case Each(parts):
                for recs, part in parts:
                    self._apply(recs, part, attempted=attempted)
            case Done(value):
                store.done(records, value, by_settling=False)
                self._ended(records)
            case Booked(value):
                store.done(records, value, by_settling=True)
                self._ended(records)
            case Rejected(reason, code) | NotBooked(send_again=False, reason=reason, code=code):
                store.rejected(records, reason, code)
                self._ended(records)
            case Unclear(detail):
                store.hold(records, detail)
                self._ended(records)
            case GaveUp(reason):
                store.gave_up(records, reason)
                self._ended(records)
            case Wait(seconds, reason):
                self._wait(records, seconds, reason)
            case Ambiguous(detail, may_have_applied, retry_after, status):
                if status is not None and attempted:
                    store.server_error(records, status)
                elif attempted and not may_have_applied:
                    store.not_sent(records)
                self._retry(records, detail, retry_after)
            case Unreachable(detail, retry_after):
                if attempted:
                    store.not_sent(records)
                self._retry(records, detail, retry_after)
            case RateLimited(wait_s, detail):
                if attempted:
                    store.not_sent(records)  # a 429 applies nothing
                if self.destination.rate_limit is not None:
                    self.destination.rate_limit.block(wait_s)
                self._paused_until = max(self._paused_until, self.schedule.monotonic() + wait_s)
                self._wait(records, wait_s, detail)
            # NotBooked(send_again=True): sent again in this step; Stalled: nothing happened. No case for
            # them: a case that does nothing was a mutant no test could kill (removing it changes nothing).

    def _ended(self, records: Sequence[R]) -> None:
        ids = [r.id for r in records]
        self.schedule.forget(ids)
        self.destination.forget(ids)

    def _retry(self, records: Sequence[R], reason: str, retry_after: float | None) -> None:
        # The default only counts for no record at all, and then both writes below are no-ops: a changed
        # or dropped default was a mutant no test could kill.
        attempts = max((r.attempts for r in records), default=0)  # pragma: no mutate
        self._wait(records, self.schedule.retry_delay_s(attempts, retry_after), reason)

    def _wait(self, records: Sequence[R], seconds: float, reason: str) -> None:
        """Try ``records`` again in ``seconds`` (monotonic); the store notes when, for people to read."""
        self.schedule.wait((r.id for r in records), seconds)
        self.destination.store.note_retry(records, self.clock() + seconds, reason)

    # --- the background loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver due records until ``stop``; while the circuit breaker is open, probe instead."""
        name = self.destination.name
        while not stop.is_set():
            try:
                count = await self._round()
            except JournalError as exc:
                log.error("%s outbox paused: %s", name, exc)
                await self._sleep(stop, STORAGE_PAUSE_S)
                continue
            except Exception:  # the outbox must outlive any one bad answer or bug
                log.exception("%s outbox pass failed; trying again shortly", name)
                await self._sleep(stop, STORAGE_PAUSE_S)
                continue
            if not self.online():
                await self._sleep(stop, self.probe_interval_s)
                if self.probe is not None:
                    await self.probe()
                continue
            if count > 0:  # not `if count`: a count gone negative (a mutant) must not pass for settled
                await asyncio.sleep(0)  # settled something: look again at once, after others had a turn
                continue
            await self._sleep(stop, self.idle_wait_s())

    def _blocked_s(self) -> float:
        now = self.schedule.monotonic()
        bucket = self.destination.rate_limit
        return max(self._paused_until - now, 0.0 if bucket is None else bucket.wait_s())

    def idle_wait_s(self) -> float:
        """Seconds until something may be tried, between ``min_pause_s`` and ``idle_look_s``."""
        waits = [self.idle_look_s]
        upcoming = self.schedule.next_in_s()
        if upcoming is not None:
            waits.append(upcoming)
        blocked = self._blocked_s()
        if blocked > 0:
            waits.append(blocked)
        return max(self.min_pause_s, min(waits))

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        self._wake.clear()
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _round(self) -> int:
        """Send what is due, pass after pass while that settles something; returns how many it settled."""
        d = self.destination
        total = 0
        while self.online() and self._blocked_s() <= 0:
            self.passes += 1
            due = [
                r
                for r in d.store.due(self.batch_limit)
                if d.lane(r) not in self.in_flight and d.ready(r) and self.schedule.due(r.id)
            ]
            batches = [due] if d.batches and due else [[r] for r in due]
            count = 0
            for batch in batches:
                result = await self.deliver(batch)
                if isinstance(result, Stalled) and result.storage:
                    raise JournalError(result.detail)
                count += settled_count(result)
                if not self.online() or self._blocked_s() > 0:
                    break
            total += count
            if not count:
                break
        return total


def _joined(ended: list[Part], *more: Part) -> Result:
    """One result for a step: a lone part's outcome as it is, several as Each."""
    parts = [*ended, *more]
    return parts[0][1] if len(parts) == 1 else Each(tuple(parts))
