"""A fake outbox destination for the outbox's own tests, and a process that delivers through it.

The fake server keeps what it applied in its own SQLite file (so it outlives a killed terminal) and
answers as a test scripts it, one word per attempt of a record: ``done``; ``lost`` (applied, answer
lost: ambiguous); ``timeout`` (not applied, ambiguous); ``refused`` (never arrived); ``429`` (rate
limited); ``error`` (a 500, not applied); ``reject``. Its settle rule looks the record up, as ready2order
will search for a reference: applied is booked, not applied is sent again.

``python -m tests.outbox_lab JOURNAL SERVER COUNT`` journals COUNT records (first run only) and delivers
them until none is pending; the crash tests kill it at each crash point of the delivery step.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from terminal.journal import Journal
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
    Unclear,
    Unreachable,
    Wait,
)
from terminal.outbox.rate_limit import TokenBucket
from terminal.outbox.schedule import Backoff, Schedule
from terminal.outbox.table import OutboxRow, OutboxTable, insert_statement

NAME = "fake"


class FakeServer:
    """What a remote system applied, by record reference (duplicates kept: the test counts them)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS applied (ref TEXT NOT NULL, at REAL NOT NULL)")

    def apply(self, ref: str) -> None:
        self.db.execute("INSERT INTO applied (ref, at) VALUES (?, ?)", (ref, time.time()))

    def count(self, ref: str) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM applied WHERE ref = ?", (ref,)).fetchone()[0])

    def refs(self) -> list[str]:
        return [str(r[0]) for r in self.db.execute("SELECT ref FROM applied ORDER BY ref")]

    def close(self) -> None:
        self.db.close()


class FakeDestination:
    """A scripted destination over the outbox table (``answers``: words by ref, one per attempt)."""

    name = NAME

    def __init__(
        self,
        journal: Journal,
        server: FakeServer,
        *,
        answers: dict[str, list[str]] | None = None,
        settle_rule: str = "lookup",
        batches: bool = False,
        rate_limit: TokenBucket | None = None,
        answer_after_s: float = 0.0,
    ) -> None:
        self.store = OutboxTable(journal, NAME)
        self.server = server
        self.answers = answers or {}
        self.settle_rule = settle_rule  # lookup, give_up, unclear, wait
        self.batches = batches
        self.rate_limit = rate_limit
        self.answer_after_s = answer_after_s
        self.sent: list[tuple[str, ...]] = []  # refs of each attempt's request
        self.settles: list[str] = []

    def lane(self, record: OutboxRow) -> str:
        return record.ref

    def ready(self, record: OutboxRow) -> bool:
        return True

    def needs_settle(self, record: OutboxRow) -> bool:
        return record.maybe_sent

    def forget(self, record_ids: Sequence[int]) -> None:
        pass

    async def settle(self, record: OutboxRow) -> Settled | Outcome:
        self.settles.append(record.ref)
        if self.settle_rule == "give_up":
            return GaveUp("maybe applied: not sent again")
        if self.settle_rule == "unclear":
            return Unclear("cannot tell")
        if self.settle_rule == "wait" and self.settles.count(record.ref) == 1:
            return Wait(0.05, "too early to tell")
        if self.server.count(record.ref):
            return Booked("found")
        return NotBooked(True)

    async def prepare(self, batch: Sequence[OutboxRow]) -> object | Outcome:
        return None

    async def attempt(self, batch: Sequence[OutboxRow]) -> Outcome | Each:
        self.sent.append(tuple(r.ref for r in batch))
        if self.answer_after_s:
            await asyncio.sleep(self.answer_after_s)
        parts = tuple(((r,), self._answer(r)) for r in batch)
        return parts[0][1] if len(parts) == 1 else Each(parts)

    def _answer(self, record: OutboxRow) -> Outcome:
        script = self.answers.get(record.ref, [])
        word = script.pop(0) if script else "done"
        if word in ("done", "lost"):
            self.server.apply(record.ref)
        outcomes: dict[str, Outcome] = {
            "done": Done("applied"),
            "lost": Ambiguous("answer lost", True),
            "timeout": Ambiguous("timed out", True),
            "refused": Unreachable("connection refused"),
            "429": RateLimited(0.05),
            "error": Ambiguous("500 Internal Server Error", True, status=500),
            "reject": Rejected("400: no such thing", "bad"),
        }
        return outcomes[word]


def add_records(journal: Journal, count: int) -> list[str]:
    refs = [f"r{i}" for i in range(count)]
    journal.execute_all([insert_statement(NAME, ref, {"n": i}) for i, ref in enumerate(refs)])
    return refs


def fast_loop(destination: FakeDestination) -> DeliveryLoop[OutboxRow]:
    return DeliveryLoop(
        destination, schedule=Schedule(Backoff(base_s=0.01, max_s=0.05)), min_pause_s=0.01, idle_look_s=0.05
    )


def pending(journal: Journal) -> int:
    return int(journal.query("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")[0][0])


async def drain(loop: DeliveryLoop[OutboxRow], journal: Journal) -> None:
    """Run ``loop`` until no record of the outbox table is pending."""
    stop = asyncio.Event()
    task = asyncio.ensure_future(loop.run(stop))
    while pending(journal):
        await asyncio.sleep(0.01)
    stop.set()
    await task


async def deliver_all(journal: Journal, server: FakeServer, count: int) -> None:
    if not journal.query("SELECT 1 FROM outbox LIMIT 1"):
        add_records(journal, count)
    # Some answers get lost after the server applied them, some requests never arrive.
    answers = {f"r{i}": ["lost"] if i % 3 == 1 else ["refused"] if i % 3 == 2 else [] for i in range(count)}
    await drain(fast_loop(FakeDestination(journal, server, answers=answers)), journal)


def main(argv: Sequence[str]) -> int:
    journal = Journal.open(Path(argv[0]))
    server = FakeServer(Path(argv[1]))
    try:
        asyncio.run(deliver_all(journal, server, int(argv[2])))
    finally:
        server.close()
        journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
