"""Reports booked sales to Partybroker in batches (one POST per flush), never delaying a tap."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from terminal.partybroker.client import (
    Ambiguous,
    Drinks,
    PartybrokerClient,
    Recorded,
    Rejected,
    Unauthorized,
)
from terminal.partybroker.price_board import PricePoller
from terminal.partybroker.report_outbox import PendingReport, ReportOutbox

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
RETRY_MAX_S = 30.0


class ReportSender:
    """Drains the report outbox: sums quantities per drink, one POST, prices applied at once."""

    def __init__(
        self,
        outbox: ReportOutbox,
        client: PartybrokerClient,
        poller: PricePoller,
        *,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.client = client
        self.poller = poller
        self.flush_interval_s = flush_interval_s
        self.clock = clock
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._failures = 0
        # Waits run on the monotonic clock: a stepped wall clock (a Pi has no RTC) must not park reports.
        self.monotonic: Callable[[], float] = time.monotonic
        self._not_before = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.flush()
            except Exception:  # a broken report must never stop the terminal
                log.exception("Partybroker report flush failed")
            self._wake.clear()
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            await asyncio.wait(waits, timeout=self.flush_interval_s, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()

    async def flush(self) -> bool:
        """One POST with every due report; True when something was sent."""
        if self.monotonic() < self._not_before:
            return False
        due = self.outbox.due()
        if not due:
            return False
        # One unknown drink would fail the whole POST (the party books all or nothing).
        missing = set(self.poller.board.missing)
        unlisted = [r for r in due if r.drink_key in missing]
        self.outbox.settle(unlisted, "dropped", "drink not listed by the party (Premium?)")
        due = [r for r in due if r.drink_key not in missing]
        if not due:
            return False
        batch = self.poller.board.batch((r.drink_key, r.quantity) for r in due)
        if not batch.sales:
            self.outbox.settle(due, "dropped", "no drink mapped")
            return False
        outcome = await self.client.buy(batch.sales)
        match outcome:
            case Drinks(drinks):
                self.outbox.settle(due, "sent")
                self.poller.apply_sale(drinks)
                self._failures = 0
            case Recorded(reason):
                self.outbox.settle(due, "sent", reason)
                self._failures = 0
            case Rejected(status, reason):
                log.error("Partybroker refused %d report(s) (%d: %s): dropped", len(due), status, reason)
                self.outbox.settle(due, "dropped", f"{status}: {reason}")
            case Unauthorized():
                log.error("Partybroker refuses the login: fix [partybroker] username / password_file")
                self._retry_in(due, RETRY_MAX_S, "unauthorized")
            case Ambiguous(reason, retry_after, maybe_applied):
                if maybe_applied:
                    log.warning("Partybroker report outcome unknown (%s): not re-sent (at most once)", reason)
                    self.outbox.settle(due, "ambiguous", reason)
                else:
                    self._failures += 1
                    delay = min(RETRY_MAX_S, 0.5 * 2 ** min(self._failures, 8)) * self.rng.uniform(0.5, 1)
                    self._retry_in(due, max(delay, retry_after or 0.0), reason)
        return True

    def _retry_in(self, due: list[PendingReport], seconds: float, reason: str) -> None:
        self._not_before = self.monotonic() + seconds
        self.outbox.retry_at(due, self.clock() + seconds, reason)  # noted for people; not a schedule
