"""The wallet's outbox as the device loop and the app use it: the wallet destination under its delivery loop.

The rules (exactly once, reconciliation by balance, holds, unsellable products) are the wallet
destination's (``terminal/wallet/destination.py``); order, backoff and the circuit breaker's probing are
the generic delivery loop's (``terminal/outbox/loop.py``). The tap path's first attempt is the loop's
step too, entered with the sale already journaled as attempting; this module turns its outcome into the
three answers the tap path needs: delivered, refused, or later.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from terminal.journal import Journal, SaleRecord
from terminal.model import DeclineReason
from terminal.outbox.loop import MIN_PAUSE_S, DeliveryLoop, Result
from terminal.outbox.outcome import Ambiguous, Booked, Done, Each, NotBooked, Rejected, Stalled
from terminal.outbox.schedule import Schedule
from terminal.wallet.balance import Booked as ByBalance
from terminal.wallet.client import WalletClient
from terminal.wallet.destination import ALREADY_BOOKED, WalletDestination, refusal_reason
from terminal.wallet.health import ServerHealth
from terminal.wallet.sale_store import ReportStatements, SaleStore

log = logging.getLogger(__name__)

__all__ = [
    "FINAL_ERRORS",
    "MIN_PAUSE_S",
    "AttemptResult",
    "Delivered",
    "Later",
    "Refusal",
    "SaleSender",
    "refusal_reason",
]


# Error statuses the wallet application itself answers once it is done with a request (pretix rolls the
# order back on an unhandled error): the balance read right after tells whether it booked. A proxy's 502,
# 503 or 504 is not final: the application may still be working on the request.
FINAL_ERRORS = frozenset({500})


@dataclass(frozen=True)
class Delivered:
    balance_after: int | None
    already: bool = False  # the server had booked this key before (202)
    # Why the journal could not record it ("" when it did): the sale stays pending there, maybe sent,
    # and is settled once the journal works; the guest, who has paid, is served all the same.
    unrecorded: str = ""


@dataclass(frozen=True)
class Refusal:
    reason: DeclineReason
    detail: str


@dataclass(frozen=True)
class Later:
    """Not delivered yet; stays pending (ambiguous or unreachable)."""

    detail: str
    storage: bool = False  # the journal could not be written: stop trying until it can
    server_error: bool = False  # the server answered with an error status: it is up, this request fails
    status: int | None = None  # that status


AttemptResult = Delivered | Refusal | Later


def attempt_result(result: Result) -> AttemptResult:
    """What the tap path makes of one step's result."""
    match result:
        case Done(balance, detail):
            return Delivered(balance if isinstance(balance, int) else None, already=detail == ALREADY_BOOKED)
        case Booked(balance):
            return Delivered(balance if isinstance(balance, int) else None)
        case Rejected(reason, code) | NotBooked(send_again=False, reason=reason, code=code):
            return Refusal(DeclineReason(code), reason)
        case Stalled(detail, storage, Done() as answer):
            booked = attempt_result(answer)
            assert isinstance(booked, Delivered)
            return Delivered(booked.balance_after, already=booked.already, unrecorded=detail)
        case Stalled(detail, storage):
            return Later(detail, storage=storage)
        case Ambiguous(detail, status=status):
            return Later(detail, server_error=status is not None, status=status)
        case Each():
            return Later("several outcomes")
    return Later(getattr(result, "detail", None) or getattr(result, "reason", None) or type(result).__name__)


class SaleSender:
    """Owns every request that moves money, so no sale is ever in flight twice."""

    def __init__(
        self,
        journal: Journal,
        client: WalletClient,
        health: ServerHealth,
        *,
        dedupes: bool,
        probe_interval_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_settled: Callable[[], None] | None = None,
        reports_for: ReportStatements | None = None,
        server_error_limit: int = 3,
        product_name: Callable[[str], str] | None = None,
        on_unsellable: Callable[[frozenset[str]], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.client = client
        self.health = health
        self.store = SaleStore(
            journal, dedupes=dedupes, clock=clock, reports_for=reports_for, on_unsellable=on_unsellable
        )
        self.destination = WalletDestination(
            self.store,
            client,
            health,
            dedupes=dedupes,
            server_error_limit=server_error_limit,
            product_name=product_name,
            monotonic=monotonic,
        )
        self.loop: DeliveryLoop[SaleRecord] = DeliveryLoop(
            self.destination,
            schedule=Schedule(rng=rng, monotonic=monotonic),
            online=lambda: health.online,
            probe=self.destination.probe,
            probe_interval_s=probe_interval_s,
            on_settled=on_settled,
            clock=clock,
        )

    # --- what the device loop, the app and the tests use -------------------------------------------

    @property
    def in_flight(self) -> set[str]:
        """Card UIDs with a request under way."""
        return self.loop.in_flight

    @property
    def deciding(self) -> set[int]:
        """Sales whose tap is still being decided: not the outbox's yet."""
        return self.destination.deciding

    @property
    def unsellable(self) -> frozenset[str]:
        return self.store.unsellable

    @property
    def delivered(self) -> int:
        return self.store.delivered

    @property
    def reports_for(self) -> ReportStatements | None:
        return self.store.reports_for

    @reports_for.setter
    def reports_for(self, value: ReportStatements | None) -> None:
        self.store.reports_for = value

    @property
    def on_unsellable(self) -> Callable[[frozenset[str]], None] | None:
        return self.store.on_unsellable

    @on_unsellable.setter
    def on_unsellable(self, value: Callable[[frozenset[str]], None] | None) -> None:
        self.store.on_unsellable = value

    def wake(self) -> None:
        self.loop.wake()

    def busy(self, token_id: str) -> bool:
        return self.loop.busy(token_id)

    async def attempt(self, sale: SaleRecord, *, fresh_balance: int | None = None) -> AttemptResult:
        """One delivery step. ``fresh_balance`` is set by the tap path, which has just read the balance
        and journaled the sale as attempting, so the request goes out without a second read."""
        result = await self.loop.deliver([sale], begun=fresh_balance is not None)
        return attempt_result(result)

    async def settle_after_error(self, sale: SaleRecord, timeout_s: float) -> AttemptResult:
        """The tap path, after the server answered this sale's debit with a final error (FINAL_ERRORS).

        That request is over, so the balance read now tells whether it was booked: booked → Delivered (done
        and approved: the guest is told); not booked → Refusal (rejected; never approved, never sent again);
        unreadable within ``timeout_s`` (s) or unclear → Later: the sale stays unapproved and the outbox
        settles it (booked → listed for a refund; not booked → rejected). Never sends anything.
        """
        current = self.store.journal.sale(sale.id) or sale
        read = await self.destination.read_balance(current, timeout=timeout_s)
        if not isinstance(read, int):
            return Later("balance unreadable after a server error")
        verdict = self.destination.booked(current, read)
        if verdict is ByBalance.YES:
            self.store.done([current], read, by_settling=False)
            log.info("sale %d booked despite the server's error answer (balance %d)", sale.id, read)
            return Delivered(read)
        if verdict is ByBalance.NO:
            status = current.last_status or min(FINAL_ERRORS)
            code, detail = self.destination.failed_unbooked(current, status)
            self.store.rejected([current], detail, code)
            return Refusal(code, detail)
        return Later("unclear whether booked after a server error")

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver pending sales until ``stop``; probe the server while it is down."""
        await self.loop.run(stop)

    async def probe(self) -> bool:
        return await self.destination.probe()
