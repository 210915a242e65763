"""Delivers journaled sales to the wallet server exactly once, and drains the outbox in the background.

The rule for a server that does not deduplicate idempotency keys (``[wallet] dedupes = false``, as
real pretix): an attempt that may have reached the server is never re-sent blindly. Before every
attempt the wallet's balance is read and journaled; after an ambiguous failure the balance is read
again: ``before + amount`` means the sale was booked (done), ``before`` means it was not (send again),
each within the cent real pretix's truncated balances may be off (``terminal/wallet/balance.py``; exact
for 1-2 cent amounts), anything else means someone else moved money on that wallet meanwhile, and the
sale is held for a person to reconcile (``taptill queue``). Only one sale per card is in flight at a
time, and the second read waits until the ambiguous request can no longer land (its timeout plus a
second), so that a request still on its way, perhaps from a process killed since, is seen in the balance.

A sale the guest was never told was approved (the terminal stopped between journaling it and deciding, or
declined the tap after an error answer) is never sent again: the guest was not served. If its request may
have gone out, the balance says after the reconcile window whether it was booked (then it is done, and
``taptill queue`` lists it as charged but not approved, for a refund); otherwise it is rejected.

Time: a Raspberry Pi has no real-time clock, and fake-hwclock and NTP step its wall clock by hours or days.
Every wait here (backoff, retry after 401, the reconcile window) runs on the monotonic clock and lives in
memory; the times the journal keeps are for people (``taptill queue``). After a restart every pending sale
is due at once, and an attempt made by an earlier process counts as made when this one started (the state
directory's lock guarantees that process is gone), so its reconcile window is waited out in full.

A server that answers a debit with an error status (5xx) is up; it is this request that fails (real pretix
answers 500 to every debit of an item in no quota, and books nothing). Such answers never take the server
for down. On a server that does not deduplicate, a sale whose error answers reconciliation finds not booked
``server_error_limit`` times is rejected with a reason naming its products, and those products are noted
as unsellable, so the terminal stops selling them offline.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from terminal import boot_clock
from terminal.crashpoint import crashpoint
from terminal.journal import Journal, JournalError, SaleRecord, remember_card_statement
from terminal.model import DeclineReason
from terminal.server_health import ServerHealth
from terminal.wallet.balance import Booked, booked_by_balance
from terminal.wallet.client import WalletClient
from terminal.wallet.outcomes import Applied, NotFound, Refused, Unauthorized, Unavailable

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 60.0
UNAUTHORIZED_RETRY_S = 60.0
RECONCILE_SLACK_S = 1.0
IDLE_LOOK_S = 2.0
STORAGE_PAUSE_S = 5.0
MIN_PAUSE_S = 0.2  # the shortest wait between outbox passes that settled nothing


@dataclass(frozen=True)
class Delivered:
    balance_after: int | None


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


AttemptResult = Delivered | Refusal | Later
ReportStatements = Callable[[SaleRecord], Sequence[tuple[str, Sequence[object]]]]


def refusal_reason(status: int) -> DeclineReason:
    return DeclineReason.PERMISSION if status == 403 else DeclineReason.BAD_PRODUCT


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
        self.dedupes = dedupes
        self.probe_interval_s = probe_interval_s
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_settled = on_settled
        self.reports_for = reports_for  # Partybroker reports, committed with the sale's "done"
        # Longer than any request of ours can take (its timeout), plus slack for the server's own work.
        self.reconcile_after_s = client.timeout_s + RECONCILE_SLACK_S
        self.in_flight: set[str] = set()  # token ids with a request under way
        self.monotonic = monotonic  # every wait is measured on this clock; ``clock`` only stamps the journal
        self._started = self.monotonic()
        self._not_before: dict[int, float] = {}  # sale id -> monotonic time it may be tried again
        self._attempted: dict[int, float] = {}  # sale id -> monotonic time its latest request went out
        self.deciding: set[int] = set()  # sales whose tap is still being decided: not the outbox's yet
        self._wake = asyncio.Event()
        self.delivered = 0
        self.server_error_limit = server_error_limit
        self.product_name = product_name or (lambda pid: pid)
        self.on_unsellable = on_unsellable  # tells the controller which products not to sell offline
        self.unsellable: frozenset[str] = frozenset(journal.unsellable())

    def _unsellable_changed(self) -> None:
        self.unsellable = frozenset(self.journal.unsellable())
        if self.on_unsellable is not None:
            self.on_unsellable(self.unsellable)

    def wake(self) -> None:
        self._wake.set()

    def busy(self, token_id: str) -> bool:
        return token_id in self.in_flight

    async def attempt(self, sale: SaleRecord, *, fresh_balance: int | None = None) -> AttemptResult:
        """One delivery attempt. ``fresh_balance`` is set by the tap path, which has just read the
        balance and journaled the sale as attempting, so the request goes out without a second read."""
        if sale.token_id in self.in_flight:
            return Later("another request for this card is under way")
        self.in_flight.add(sale.token_id)
        try:
            result = await self._attempt(sale, fresh_balance)
        except JournalError as exc:
            log.error("cannot journal the outcome of sale %d: %s", sale.id, exc)
            result = Later(str(exc), storage=True)
        finally:
            self.in_flight.discard(sale.token_id)
        if not isinstance(result, Later) and self.on_settled is not None:
            self.on_settled()
        return result

    async def _attempt(self, sale: SaleRecord, fresh_balance: int | None) -> AttemptResult:
        if fresh_balance is None and not sale.approved:
            return await self._settle_unapproved(sale)
        if fresh_balance is None:
            if self.dedupes:
                self.journal.mark_attempt(sale.id, sale.balance_before, self.clock())
            else:
                prepared = await self._prepare_non_dedup(sale)
                if prepared is not None:
                    return prepared
        self._attempted[sale.id] = self.monotonic()
        res = await self.client.transact(
            sale.token_id,
            sale.products,
            description=sale.description,
            tag=sale.tag,
            idempotency_key=sale.idempotency_key,
        )
        crashpoint("after_answer")
        match res:
            case Applied(wallet, already):
                self.health.mark_up()
                balance = wallet.balance_cents if wallet is not None else None
                self._done(sale, balance, approved=fresh_balance is not None)
                self.delivered += 1
                log.info("sale %d delivered%s", sale.id, " (already booked)" if already else "")
                return Delivered(balance)
            case NotFound(detail):
                self.health.mark_up()
                return self._reject(sale, DeclineReason.UNKNOWN_CARD, detail or "card not registered")
            case Refused(status, reason):
                self.health.mark_up()
                return self._reject(sale, refusal_reason(status), f"{status}: {reason}")
            case Unauthorized(detail):
                self.health.mark_token_refused(detail)
                self._wait(sale, UNAUTHORIZED_RETRY_S, "unauthorized")
                return Later("unauthorized")
            case Unavailable(reason, maybe_applied, retry_after, status) if status is not None:
                # The server is up and answered: this request fails. Not a reason to decide taps offline.
                self.health.mark_up()
                if not self.dedupes:
                    # Counted only once reconciliation shows it was not booked. A deduplicating server
                    # is never given up on: the same key is safe to send again, and an error answer
                    # does not tell whether the server booked the sale before it failed.
                    self.journal.mark_server_error(sale.id, status)
                self._retry_later(sale, reason, retry_after)
                return Later(reason, server_error=True)
            case Unavailable(reason, maybe_applied, retry_after):
                if not maybe_applied and not self.dedupes:
                    self.journal.mark_not_sent(sale.id)
                self.health.mark_down(reason)
                self._retry_later(sale, reason, retry_after)
                return Later(reason)
        return Later("unexpected outcome")

    async def _prepare_non_dedup(self, sale: SaleRecord) -> AttemptResult | None:
        """Read the balance first; settle an earlier ambiguous attempt; journal this attempt."""
        if sale.maybe_sent:
            early = self._before_window(sale)
            if early is not None:
                return early
        read = await self._read_balance(sale)
        if not isinstance(read, int):
            return read
        balance = read
        if sale.maybe_sent:
            booked = self._booked(sale, balance)
            if booked is Booked.YES:
                self._done(sale, balance)
                self.delivered += 1
                log.info("sale %d reconciled: the earlier attempt was booked", sale.id)
                return Delivered(balance)
            if booked is Booked.UNCLEAR:
                return self._hold(sale, balance, "unclear whether booked")
            if sale.last_status is not None:
                errors = self.journal.count_server_error(sale.id)
                if errors >= self.server_error_limit:
                    return self._reject_unsellable(sale, sale.last_status)
            log.info("sale %d reconciled: the earlier attempt was not booked, sending again", sale.id)
        self.journal.mark_attempt(sale.id, balance, self.clock())
        return None

    async def _settle_unapproved(self, sale: SaleRecord) -> AttemptResult:
        """A sale the guest was never told was approved: find out whether it was booked; never send it."""
        if not sale.maybe_sent:
            detail = "never approved at the terminal (stopped or declined before the decision); never sent"
            return self._reject(sale, DeclineReason.SERVER_TROUBLE, detail)
        early = self._before_window(sale)
        if early is not None:
            return early
        read = await self._read_balance(sale)
        if not isinstance(read, int):
            return read
        booked = self._booked(sale, read)
        if booked is Booked.YES:
            self._done(sale, read)
            self.delivered += 1
            log.error("sale %d was booked but the guest was never told it was approved: refund it", sale.id)
            return Delivered(read)
        if booked is Booked.NO:
            detail = "never approved at the terminal; not booked, not sent again"
            return self._reject(sale, DeclineReason.SERVER_TROUBLE, detail)
        return self._hold(sale, read, "never approved at the terminal and unclear whether booked")

    def _before_window(self, sale: SaleRecord) -> Later | None:
        """Later, while a request that went out (perhaps from a process killed since) may still be on its
        way or being processed: the balance only tells the truth once it can no longer land."""
        attempted = self._attempted.get(sale.id, self._started)
        wait = attempted + self.reconcile_after_s - self.monotonic()
        if wait <= 0:
            return None
        self._wait(sale, wait, "waiting before reconciling")
        return Later("waiting before reconciling")

    async def _read_balance(self, sale: SaleRecord) -> int | AttemptResult:
        """The wallet's balance in cents, or how this attempt ends when it cannot be read."""
        res = await self.client.wallet(sale.token_id)
        if isinstance(res, NotFound):
            # An unknown token is never charged (real pretix answers 500 and books nothing).
            self.health.mark_up()
            return self._reject(sale, DeclineReason.UNKNOWN_CARD, res.detail or "card not registered")
        if isinstance(res, Refused):
            self.health.mark_up()
            return self._reject(sale, refusal_reason(res.status), f"{res.status}: {res.reason}")
        if isinstance(res, Unauthorized):
            self.health.mark_token_refused(res.detail)
            self._wait(sale, UNAUTHORIZED_RETRY_S, "unauthorized")
            return Later("unauthorized")
        if isinstance(res, Unavailable):
            self.health.mark_down(res.reason, res.status)
            self._retry_later(sale, res.reason, res.retry_after_s)
            return Later(res.reason)
        self.health.mark_up()
        crashpoint("after_reconcile_read")
        return res.wallet.balance_cents

    @staticmethod
    def _booked(sale: SaleRecord, balance: int) -> Booked:
        before = sale.balance_before
        return Booked.UNCLEAR if before is None else booked_by_balance(before, balance, sale.amount_cents)

    def _hold(self, sale: SaleRecord, balance: int, why: str) -> Later:
        """Stop retrying: a person compares the wallet and settles it (taptill queue, taptill settle)."""
        detail = (
            f"{why}: balance {balance}, before the attempt {sale.balance_before}, "
            f"amount {sale.amount_cents}; check the wallet and settle by hand"
        )
        self.journal.hold(sale.id, detail)
        self._forget(sale.id)
        log.error("sale %d held for reconciliation: %s", sale.id, detail)
        return Later(detail)

    def _done(self, sale: SaleRecord, balance: int | None, *, approved: bool = False) -> None:
        also = list(self.reports_for(sale)) if self.reports_for is not None else []
        if balance is not None:
            also.append(remember_card_statement(sale.token_id, balance, boot_clock.now(self.clock())))
        self.journal.mark_done(sale.id, balance, also, approved=approved)
        self._forget(sale.id)
        again = {str(p) for p in sale.products} & self.unsellable
        if again and self.journal.clear_unsellable(again):
            log.warning("sale %d booked a product thought unsellable: selling it again", sale.id)
            self._unsellable_changed()

    def _reject_unsellable(self, sale: SaleRecord, status: int) -> Refusal:
        """The server keeps failing this sale and books nothing: stop, name the products, stop selling
        them offline (likely an item in no pretix quota, or inactive)."""
        products = [(str(p), self.product_name(str(p))) for p in dict.fromkeys(sale.products)]
        named = ", ".join(f"{name} (id {pid})" for pid, name in products)
        detail = (
            f"the server answered {status} to every attempt ({self.server_error_limit}) and booked nothing; "
            f"it cannot book {named}: is the item in a pretix quota and active?"
        )
        refusal = self._reject(sale, DeclineReason.BAD_PRODUCT, detail)
        self.journal.mark_unsellable(products, detail)
        log.error("not selling %s offline any more: %s", named, detail)
        self._unsellable_changed()
        return refusal

    def _reject(self, sale: SaleRecord, reason: DeclineReason, detail: str) -> Refusal:
        self.journal.mark_rejected(sale.id, f"{reason}: {detail}")
        self._forget(sale.id)
        if sale.offline or reason is DeclineReason.UNKNOWN_CARD:
            self.journal.deny_card(sale.token_id, str(reason))
        log.warning("sale %d rejected: %s (%s)", sale.id, reason, detail)
        return Refusal(reason, detail)

    def _retry_later(self, sale: SaleRecord, reason: str, retry_after: float | None) -> None:
        delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** min(sale.attempts, 10))
        delay *= self.rng.uniform(0.5, 1.0)  # jitter: terminals that lost Wi-Fi together don't retry together
        if retry_after is not None:
            delay = max(delay, retry_after)
        self._wait(sale, delay, reason)

    def _wait(self, sale: SaleRecord, seconds: float, reason: str) -> None:
        """Try ``sale`` again in ``seconds`` (monotonic); the journal notes when, for people to read."""
        self._not_before[sale.id] = self.monotonic() + seconds
        self.journal.schedule_retry(sale.id, self.clock() + seconds, reason)

    def _forget(self, sale_id: int) -> None:
        self._not_before.pop(sale_id, None)
        self._attempted.pop(sale_id, None)

    # --- the background outbox --------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver pending sales until ``stop``; probe the server while it is down.

        Every pass ends in a real wait (at least MIN_PAUSE_S) unless it settled a sale: a pass that finds
        nothing it may send (a sale in flight on the tap path, a sale waiting for its reconcile window)
        must never go round again without letting the event loop read the answers it waits for.
        """
        while not stop.is_set():
            try:
                settled = await self._round()
            except JournalError as exc:
                log.error("outbox paused: %s", exc)
                await self._sleep(stop, STORAGE_PAUSE_S)
                continue
            except Exception:  # the outbox must outlive any one bad answer or bug
                log.exception("outbox round failed; trying again shortly")
                await self._sleep(stop, STORAGE_PAUSE_S)
                continue
            if not self.health.online:
                await self._sleep(stop, self.probe_interval_s)
                await self.probe()
                continue
            if settled:
                await asyncio.sleep(0)  # settled something: look again at once, after others had a turn
                continue
            await self._sleep(stop, self._idle_wait())

    def _idle_wait(self) -> float:
        """Seconds until the next sale may be tried, between MIN_PAUSE_S and IDLE_LOOK_S."""
        now = self.monotonic()
        # Look again at least every few seconds: `taptill settle` changes the journal from outside.
        wait = min([IDLE_LOOK_S, *(at - now for at in self._not_before.values() if at > now)])
        return max(MIN_PAUSE_S, wait)

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
        settled = 0
        while self.health.online:
            now = self.monotonic()
            due = [
                s
                for s in self.journal.due_sales(limit=50)
                if s.token_id not in self.in_flight
                and s.id not in self.deciding
                and self._not_before.get(s.id, 0.0) <= now
            ]
            settled_now = 0
            for sale in due:
                result = await self.attempt(sale)
                if isinstance(result, Later):
                    if result.storage:
                        raise JournalError(result.detail)
                    if not self.health.online:
                        break
                else:
                    settled_now += 1
            settled += settled_now
            if not settled_now:
                break
        return settled

    async def probe(self) -> bool:
        """A cheap request that moves no money, to close the circuit breaker."""
        res = await self.client.terminal_info(timeout=min(5.0, self.client.timeout_s))
        if isinstance(res, Unavailable):
            self.health.mark_down(res.reason, res.status)
            return False
        if isinstance(res, Unauthorized):
            self.health.mark_token_refused(res.detail)
            return False
        self.health.mark_up()
        return True
