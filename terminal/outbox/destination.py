"""The interface every outbox destination implements (wallet debits, Partybroker reports, and later
ready2order invoices and PAR Brink payments), and the store it keeps its records in.

A destination builds its request from a record, sends it and classifies the answer (``attempt``); says
which records need settling first and settles them by its own rule (``settle``): the wallet sends again
with the same key to a deduplicating server or compares the balance on the real one, Partybroker gives up
(at most once) and counts it, ready2order will search for the record's reference, Brink will look the
order up. The delivery loop (``terminal.outbox.loop``) does everything else: order, schedule, backoff,
rate limit, holds and marking through the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from terminal.outbox.outcome import Each, Outcome, Settled
from terminal.outbox.rate_limit import TokenBucket


class OutboxRecord(Protocol):
    """What the loop reads of a record: its id (unique within its destination) and its attempts so far."""

    @property
    def id(self) -> int: ...

    @property
    def attempts(self) -> int: ...


R = TypeVar("R", bound=OutboxRecord)


class OutboxStore(Protocol[R]):
    """Durable state of a destination's records; every method commits before it returns (JournalError if it
    cannot). A record leaves ``due`` only through done, rejected, hold or gave_up."""

    def due(self, limit: int) -> Sequence[R]:
        """Records to deliver now, oldest first (held and finished ones never)."""
        ...

    def begin(self, records: Sequence[R], basis: object) -> None:
        """Note durably, before the request goes out, that it may be applied (attempts + 1)."""
        ...

    def done(self, records: Sequence[R], result: object, *, by_settling: bool) -> None: ...

    def rejected(self, records: Sequence[R], reason: str, code: str) -> None: ...

    def not_sent(self, records: Sequence[R]) -> None:
        """The request provably never arrived: no settling needed before the next attempt."""
        ...

    def server_error(self, records: Sequence[R], status: int) -> None:
        """The server answered the request with an error status (it is up; this request fails)."""
        ...

    def note_retry(self, records: Sequence[R], at_wall: float, reason: str) -> None:
        """For people only: when the next attempt is expected (wall clock) and why."""
        ...

    def hold(self, records: Sequence[R], reason: str) -> None:
        """Stop trying: a person settles it (``taptill settle``)."""
        ...

    def gave_up(self, records: Sequence[R], reason: str) -> None:
        """At most once: maybe applied, never sent again; counted as ambiguous."""
        ...


class Destination(Protocol[R]):
    """One system the terminal delivers journaled records to."""

    @property
    def name(self) -> str: ...

    @property
    def batches(self) -> bool:
        """True: one attempt carries every due record (Partybroker sums quantities per flush)."""
        ...

    @property
    def store(self) -> OutboxStore[R]: ...

    @property
    def rate_limit(self) -> TokenBucket | None: ...

    def lane(self, record: R) -> str:
        """Records of one lane are never in flight together (the wallet: one request per card)."""
        ...

    def ready(self, record: R) -> bool:
        """False while someone else owns the record for now (the wallet: a tap still being decided)."""
        ...

    def needs_settle(self, record: R) -> bool:
        """True when an earlier attempt may have been applied and the rule must settle it before any
        new attempt (or instead of one)."""
        ...

    async def settle(self, record: R) -> Settled | Outcome:
        """Apply the destination's rule to a maybe-applied record; an Outcome when it could not ask."""
        ...

    async def prepare(self, batch: Sequence[R]) -> object | Outcome:
        """What the attempt builds on, read before ``begin`` (the wallet on a server that does not
        deduplicate: the balance); None when nothing; an Outcome when it could not be read."""
        ...

    async def attempt(self, batch: Sequence[R]) -> Outcome | Each:
        """Build the request, send it, classify the answer. Side effects of an answer (a price board,
        a circuit breaker) happen here; the record's state changes only through the loop and the store."""
        ...

    def forget(self, record_ids: Sequence[int]) -> None:
        """The records ended (done, rejected, held, given up): drop anything kept about them in memory."""
        ...
