"""Wallet debits (and top-ups) as an outbox destination: each journaled sale reaches the wallet server once.

Settle rule. A deduplicating server (``[wallet] dedupes = true``) is sent the same idempotency key again.
On one that does not (``dedupes = false``, as real pretix) an attempt that may have reached the server is
never re-sent blindly. Before every attempt the wallet's balance is read and journaled; after an ambiguous
failure the balance is read again: ``before + amount`` means the sale was booked (done), ``before`` means
it was not (send again), each within the cent real pretix's truncated balances may be off
(``terminal/wallet/balance.py``; exact for 1-2 cent amounts), anything else means someone else moved
money on that wallet meanwhile, and the sale is held for a person to reconcile (``taptill queue``). Only
one sale per card is in flight at a time, and the second read waits until the ambiguous request can no
longer land (its timeout plus a second), so that a request still on its way, perhaps from a process
killed since, is seen in the balance.

A sale the guest was never told was approved (the terminal stopped between journaling it and deciding, or
declined the tap after an error answer) is never sent again: the guest was not served. If its request may
have gone out, the balance says after the reconcile window whether it was booked (then it is done, and
``taptill queue`` lists it as charged but not approved, for a refund); otherwise it is rejected.

Time: an attempt made by an earlier process counts as made when this one started (the state directory's
lock guarantees that process is gone), so its reconcile window is waited out in full.

A server that answers a debit with an error status (5xx) is up; it is this request that fails (real pretix
answers 500 to every debit of an item in no quota, and books nothing). Such answers never take the server
for down. On a server that does not deduplicate, a sale whose error answers reconciliation finds not booked
``server_error_limit`` times is rejected with a reason naming its products, and those products are noted
as unsellable (before the rejection is written), so the terminal stops selling them offline. In a cart of
several products only those the server never booked before are suspects (counted and noted); a cart of
products each booked before notes none, and its rejection says the cart as a whole failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import assert_never

from terminal.journal import SaleRecord
from terminal.model import DeclineReason
from terminal.outbox.landing import LandingWindow
from terminal.outbox.outcome import (
    Ambiguous,
    Booked,
    Done,
    NotBooked,
    Outcome,
    Rejected,
    Settled,
    Unclear,
    Unreachable,
    Wait,
)
from terminal.outbox.rate_limit import TokenBucket
from terminal.service.crashpoint import crashpoint
from terminal.wallet.balance import Booked as ByBalance
from terminal.wallet.balance import booked_by_balance
from terminal.wallet.client import WalletClient
from terminal.wallet.health import ServerHealth
from terminal.wallet.outcomes import Applied, NotFound, Refused, Unauthorized, Unavailable
from terminal.wallet.sale_store import SaleStore

log = logging.getLogger(__name__)

# The detail of a Done whose key the server had booked before (202): the tap path tells a key booked by
# someone else (a table bill paid at another terminal) from its own sale.
ALREADY_BOOKED = "already booked"

UNAUTHORIZED_RETRY_S = 60.0
# A 404's reason when the client gives none. WalletClient's NotFound always says why (its own words when the
# server's are empty), so only another client would see this; a constant, so mutmut makes no mutant of
# words no test through the client can reach.
UNKNOWN_CARD_DETAIL = "card not registered"
# The longest a probe waits for its answer (seconds), or the client's own limit if that is shorter: a probe
# only tells whether the server answers again, and must not hold the loop as long as a debit may.
PROBE_TIMEOUT_S = 5.0


# Words of a refusal that is about the wallet's money, not the request: the seed documents only "400:
# parameters invalid", and a server with a balance rule (the doc emulator: {"detail": "Insufficient
# balance"}) refuses that way. The guest must read "insufficient balance", and the report must not count
# the sale as a product the server cannot sell.
BALANCE_WORDS = ("insufficient", "balance", "funds")


def refusal_reason(status: int, reason: str) -> DeclineReason:
    """The decline code of a definitive refusal (status 4xx, the server's reason text): 403 is the
    terminal's permission, a reason naming the balance or funds is the wallet's money, anything else the
    request's products (an unknown or unsellable item, the usual 400)."""
    if status == 403:
        return DeclineReason.PERMISSION
    if any(word in reason.lower() for word in BALANCE_WORDS):
        return DeclineReason.INSUFFICIENT_BALANCE
    return DeclineReason.BAD_PRODUCT


class WalletDestination:
    """Builds a debit from a sale, classifies the server's answer, settles by key or by balance."""

    name = "wallet"
    batches = False
    rate_limit: TokenBucket | None = None  # the wallet server sets no rate

    def __init__(
        self,
        store: SaleStore,
        client: WalletClient,
        health: ServerHealth,
        *,
        dedupes: bool,
        server_error_limit: int = 3,
        product_name: Callable[[str], str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.client = client
        self.health = health
        self.dedupes = dedupes
        self.server_error_limit = server_error_limit
        self.product_name = product_name or (lambda pid: pid)
        # Reconciling reads the balance only once the sale's last request can no longer land: the same
        # rule as every destination without an idempotency key (outbox/landing.py).
        self.landing = LandingWindow(client.timeout_s, monotonic)
        self.reconcile_after_s = self.landing.after_s
        self.deciding: set[int] = set()  # sales whose tap is still being decided: not the outbox's yet

    def lane(self, record: SaleRecord) -> str:
        return record.token_id

    def ready(self, record: SaleRecord) -> bool:
        return record.id not in self.deciding

    def needs_settle(self, record: SaleRecord) -> bool:
        return not record.approved or (not self.dedupes and record.maybe_sent)

    def forget(self, record_ids: Sequence[int]) -> None:
        self.landing.forget(record_ids)

    async def prepare(self, batch: Sequence[SaleRecord]) -> object | Outcome:
        """A server that does not deduplicate: the balance before the attempt, journaled by ``begin``."""
        if self.dedupes:
            return None
        return await self.read_balance(batch[0])

    async def attempt(self, batch: Sequence[SaleRecord]) -> Outcome:
        (sale,) = batch
        self.landing.sent(sale.id)
        res = await self.client.transact(
            sale.token_id,
            sale.products,
            description=sale.description,
            tag=sale.tag,
            idempotency_key=sale.idempotency_key,
        )
        # Only the crash tests' subprocesses die here; in-process, a renamed point is the same no-op (issue
        # 18's mutation run could not tell it apart), hence no mutant.
        crashpoint("after_answer")  # pragma: no mutate
        match res:
            case Applied(wallet, already):
                self.health.mark_up()
                log.info("sale %d delivered%s", sale.id, " (already booked)" if already else "")
                return Done(
                    wallet.balance_cents if wallet is not None else None, ALREADY_BOOKED if already else ""
                )
            case NotFound(detail):
                self.health.mark_up()
                return Rejected(detail or UNKNOWN_CARD_DETAIL, DeclineReason.UNKNOWN_CARD)
            case Refused(status, reason):
                self.health.mark_up()
                return Rejected(f"{status}: {reason}", refusal_reason(status, reason))
            case Unauthorized(detail):
                self.health.mark_token_refused(detail)
                return Unreachable("unauthorized", UNAUTHORIZED_RETRY_S)
            case Unavailable(reason, _maybe, retry_after, status) if status is not None:
                # The server is up and answered: this request fails. Not a reason to decide taps offline.
                self.health.mark_up()
                return Ambiguous(reason, True, retry_after, status)
            case Unavailable(reason, maybe_applied, retry_after):
                self.health.mark_down(reason)
                if maybe_applied:
                    # WalletClient gives a Retry-After only with a status (5xx) or with a 429 never applied,
                    # so here it is None; kept for another client (no test reaches a value: no mutant).
                    return Ambiguous(reason, True, retry_after)  # pragma: no mutate
                return Unreachable(reason, retry_after)
            case _:  # pragma: no mutate
                # mypy checks that every TransactionOutcome has its case above; none reaches this one
                assert_never(res)  # pragma: no mutate

    async def settle(self, record: SaleRecord) -> Settled | Outcome:
        """Unapproved sales: find out whether booked, never send. Approved ones on a server that does not
        deduplicate: booked, not booked (send again, on the balance just read) or unclear (hold)."""
        sale = record
        if not sale.approved and not sale.maybe_sent:
            detail = "never approved at the terminal (stopped or declined before the decision); never sent"
            return NotBooked(False, detail, code=DeclineReason.SERVER_TROUBLE)
        early = self._before_window(sale)
        if early is not None:
            return early
        read = await self.read_balance(sale)
        if not isinstance(read, int):
            return read
        booked = self.booked(sale, read)
        if not sale.approved:
            if booked is ByBalance.YES:
                if sale.pays_table:
                    # nothing to hand over: the booked debit paid the bill (its POS payments go out)
                    log.warning(
                        "sale %d paid its table bill, not shown paid at the terminal (it stopped or had no "
                        "answer in time); nothing to refund",
                        sale.id,
                    )
                else:
                    log.error(
                        "sale %d was booked but the guest was never told it was approved: refund it", sale.id
                    )
                return Booked(read)
            if booked is ByBalance.NO:
                detail = "never approved at the terminal; not booked, not sent again"
                return NotBooked(False, detail, code=DeclineReason.SERVER_TROUBLE)
            return Unclear(
                self._hold_detail(sale, read, "never approved at the terminal and unclear whether booked")
            )
        if booked is ByBalance.YES:
            log.info("sale %d reconciled: the earlier attempt was booked", sale.id)
            return Booked(read)
        if booked is ByBalance.UNCLEAR:
            return Unclear(self._hold_detail(sale, read, "unclear whether booked"))
        if sale.last_status is not None:
            errors = self.store.journal.count_server_error(sale.id)
            if errors >= self.server_error_limit:
                return self._unsellable(sale, sale.last_status)
        log.info("sale %d reconciled: the earlier attempt was not booked, sending again", sale.id)
        return NotBooked(True, basis=read)

    def _before_window(self, sale: SaleRecord) -> Wait | None:
        """Wait, while a request that went out (perhaps from a process killed since) may still be on its
        way or being processed: the balance only tells the truth once it can no longer land."""
        wait = self.landing.wait_s(sale.id)
        return Wait(wait, "waiting before reconciling") if wait > 0 else None

    async def read_balance(self, sale: SaleRecord, *, timeout: float | None = None) -> int | Outcome:
        """The wallet's balance in cents, or how this step ends when it cannot be read; ``timeout`` (s)
        bounds the read (default: the client's own)."""
        res = await self.client.wallet(sale.token_id, timeout=timeout)
        if isinstance(res, NotFound):
            # An unknown token is never charged (real pretix answers 500 and books nothing).
            self.health.mark_up()
            return Rejected(res.detail or UNKNOWN_CARD_DETAIL, DeclineReason.UNKNOWN_CARD)
        if isinstance(res, Refused):
            self.health.mark_up()
            return Rejected(f"{res.status}: {res.reason}", refusal_reason(res.status, res.reason))
        if isinstance(res, Unauthorized):
            self.health.mark_token_refused(res.detail)
            return Unreachable("unauthorized", UNAUTHORIZED_RETRY_S)
        if isinstance(res, Unavailable):
            self.health.mark_down(res.reason, res.status)
            return Ambiguous(res.reason, res.maybe_applied, res.retry_after_s)
        self.health.mark_up()
        crashpoint("after_reconcile_read")  # pragma: no mutate (see attempt's crash point)
        return res.wallet.balance_cents

    @staticmethod
    def booked(sale: SaleRecord, balance: int) -> ByBalance:
        """Whether ``balance`` (cents, read once the sale's request can no longer land) shows it booked."""
        before = sale.balance_before
        return ByBalance.UNCLEAR if before is None else booked_by_balance(before, balance, sale.amount_cents)

    @staticmethod
    def _hold_detail(sale: SaleRecord, balance: int, why: str) -> str:
        return (
            f"{why}: balance {balance}, before the attempt {sale.balance_before}, "
            f"amount {sale.amount_cents}; check the card's wallet in pretix, then "
            f"taptill settle {sale.idempotency_key} --booked (or --not-booked)"
        )

    def suspects(self, sale: SaleRecord) -> list[str]:
        """The products of ``sale`` that may be why the server keeps failing it and booking nothing: its
        one product; in a cart of several, those no sale the server booked ever contained (this journal:
        a product it booked is in a quota and sells, and a cart failing with it is not its fault)."""
        products = list(dict.fromkeys(str(p) for p in sale.products))
        if len(products) == 1:
            return products
        booked = self.store.journal.booked_products(products)
        return [p for p in products if p not in booked]

    def failed_unbooked(self, sale: SaleRecord, status: int) -> tuple[DeclineReason, str]:
        """The server answered ``sale``'s debit with ``status`` and the balance shows nothing booked: the
        rejection's code and detail. After server_error_limit such answers in a row for a suspect product
        (``suspects``), those products are marked unsellable (not sold offline; online taps are declined
        on the next such answer) and the code is bad_product; a cart of products each booked before marks
        none and its detail says the cart as a whole failed."""
        detail = f"the server answered its debit with {status} and booked nothing; the tap was declined"
        suspects = self.suspects(sale)
        if not suspects:
            return DeclineReason.SERVER_TROUBLE, f"{detail}; {self._whole_cart(sale)}"
        counts = self.store.unbooked_errors
        for product in suspects:
            counts[product] = counts.get(product, 0) + 1
        failing = [p for p in suspects if counts[p] >= self.server_error_limit]
        if not failing:
            # the decline's reason stays one text (the shift report groups by it); the log names the suspect
            log.warning(
                "the server answered %d to a debit of %s and booked nothing: %d such answer(s) in a row; "
                "at %d it is no longer sold",
                status,
                ", ".join(self._named(suspects)),
                max(counts[p] for p in suspects),
                self.server_error_limit,
            )
            return DeclineReason.SERVER_TROUBLE, detail
        self._mark_unsellable(failing, status)
        return DeclineReason.BAD_PRODUCT, detail

    def _unsellable(self, sale: SaleRecord, status: int) -> NotBooked:
        """The server keeps failing this sale and books nothing: stop, name the suspect products, stop
        selling them offline (likely an item in no pretix quota, or inactive)."""
        suspects = self.suspects(sale)
        if not suspects:
            detail = (
                f"the server answered {status} to every attempt ({self.server_error_limit}) and booked "
                f"nothing; {self._whole_cart(sale)}"
            )
            log.error("sale %d not booked: %s", sale.id, detail)
            return NotBooked(False, detail, code=DeclineReason.SERVER_TROUBLE)
        return NotBooked(False, self._mark_unsellable(suspects, status), code=DeclineReason.BAD_PRODUCT)

    def _whole_cart(self, sale: SaleRecord) -> str:
        named = ", ".join(self._named(list(dict.fromkeys(str(p) for p in sale.products))))
        return (
            f"the cart as a whole failed: the server booked each of its products before ({named}), so none "
            "is marked unsellable"
        )

    def _named(self, products: Sequence[str]) -> list[str]:
        return [f"{self.product_name(pid)} (id {pid})" for pid in products]

    def _mark_unsellable(self, products: Sequence[str], status: int) -> str:
        """Note ``products`` as ones the server cannot book (not sold offline); returns why, for people."""
        named = ", ".join(self._named(products))
        detail = (
            f"the server answered {status} to every attempt ({self.server_error_limit}) and booked nothing; "
            f"it cannot book {named}: is the item in a pretix quota and active? (or was the server only "
            "busy: a debit of it booked sells it again)"
        )
        self.store.mark_unsellable([(pid, self.product_name(pid)) for pid in products], detail)
        log.error("not selling %s offline any more: %s", named, detail)
        return detail

    async def probe(self) -> bool:
        """A cheap request that moves no money, to close the circuit breaker."""
        res = await self.client.terminal_info(timeout=min(PROBE_TIMEOUT_S, self.client.timeout_s))
        if isinstance(res, Unavailable):
            self.health.mark_down(res.reason, res.status)
            return False
        if isinstance(res, Unauthorized):
            self.health.mark_token_refused(res.detail)
            return False
        self.health.mark_up()
        return True
