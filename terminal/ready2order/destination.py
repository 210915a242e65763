"""ready2order invoices as an outbox destination: one invoice per booked sale, never two, none lost.

ready2order has no idempotency key. An attempt that may have reached the server (a timeout after the
request left, a dropped connection, a 5xx, an unusable 2xx, a terminal killed after ``begin``) is settled
before anything is sent again: once the request can no longer land (the client's deadline and a second
after the attempt, or after this process started for an earlier process's attempt), the invoices are
searched for the record's reference, in the same training mode, over whole days from the day before its
first attempt to the day after now (on the earlier and later of this machine's clock and the server's, so
a time zone or a clock step cannot move the window past the invoice). Found: done, with the invoice's id
and number. Not found: sent again. The search refused or unreadable: held for ``taptill settle``.

Every request counts against ``requests_per_minute`` (a token bucket of one: never more in any minute),
searches and daily-report calls included. A 429 pauses the whole mirror for the block (at least a minute).
A 401/403 stops it until the token works again (a probe reads the token file anew); a JSON 400 is a
rejection in the server's words unless the daily report is closed, which stops the mirror, or, with
``open_day``, opens the day. The invoice total answered is compared with the record's: a mismatch holds it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import assert_never

from terminal.outbox.landing import LandingWindow
from terminal.outbox.outcome import (
    Ambiguous,
    Booked,
    Done,
    Each,
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
from terminal.outbox.table import OutboxRow
from terminal.ready2order import outcomes as r2o
from terminal.ready2order.client import Ready2OrderClient
from terminal.ready2order.config import Ready2OrderConfig
from terminal.ready2order.health import MirrorHealth
from terminal.ready2order.invoice import InvoiceRequest, NotBillable, build_request, training_of
from terminal.ready2order.invoice_outbox import DESTINATION
from terminal.ready2order.invoice_table import AttemptTime, InvoiceTable, Receipt, first_attempt_at
from terminal.service.crashpoint import crashpoint

log = logging.getLogger(__name__)

SEARCH_PAGE = 50
SEARCH_MAX = 500  # invoices listed for one reference before a person is asked instead


class Ready2OrderDestination:
    """Builds an invoice from a record, creates it, settles a maybe-created one by searching its reference."""

    name = DESTINATION
    batches = False

    def __init__(
        self,
        store: InvoiceTable,
        client: Ready2OrderClient,
        cfg: Ready2OrderConfig,
        health: MirrorHealth,
        *,
        rate_limit: TokenBucket | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.client = client
        self.cfg = cfg
        self.health = health
        self.rate_limit = rate_limit or TokenBucket(1, cfg.requests_per_minute / 60.0, monotonic=monotonic)
        self.monotonic = monotonic
        self.clock = clock
        self.landing = LandingWindow(client.timeout_s, monotonic)

    def lane(self, record: OutboxRow) -> str:
        return record.ref

    def ready(self, record: OutboxRow) -> bool:
        return True

    def needs_settle(self, record: OutboxRow) -> bool:
        return record.maybe_sent

    def forget(self, record_ids: Sequence[int]) -> None:
        self.landing.forget(record_ids)

    async def prepare(self, batch: Sequence[OutboxRow]) -> object | Outcome:
        return AttemptTime(min(self.clock(), self.client.server_time() or self.clock()))

    # --- sending ---------------------------------------------------------------------------------------

    async def attempt(self, batch: Sequence[OutboxRow]) -> Outcome | Each:
        (record,) = batch
        built = build_request(record.ref, record.payload, self.cfg)
        if isinstance(built, NotBillable):
            return _held(record, built.detail.replace("REF", record.ref))
        self.landing.sent(record.id)
        answer = await self.client.create_invoice(built.body)
        match answer:
            case r2o.Created(invoice):
                self.health.working()
                return self._checked(record, built, Receipt(invoice.id, invoice.number, invoice.total))
            case r2o.Refused(status, message, code):
                return await self._refused(status, message, code)
        return self._failed(answer)

    def _checked(self, record: OutboxRow, built: InvoiceRequest, receipt: Receipt) -> Outcome | Each:
        if receipt.total == built.total:
            log.info("sale %s mirrored: %s", record.ref, receipt.describe())
            return Done(receipt)
        return _held(record, _mismatch(record, receipt, built))

    async def _refused(self, status: int, message: str, code: str) -> Outcome:
        """A JSON 4xx to a create: the server's words, unless no daily report is open (not applied)."""
        await self.spend()
        day = await self.client.day_status()
        if isinstance(day, r2o.DayStatus) and day.open:
            said = f"{status} {code}".strip()  # a refusal may come without a code
            log.error("ready2order refused an invoice (%s): %s", said, message)
            return Rejected(message, said)
        if not isinstance(day, r2o.DayStatus):
            return self._failed(day, f"refused ({status}: {message}); the daily report cannot be read")
        if self.cfg.open_day:
            await self.spend()
            opened = await self.client.open_day()
            if isinstance(opened, r2o.DayOpened):
                log.warning("no daily report was open in ready2order: opened one (open_day = true)")
                return Unreachable("no daily report was open; opened one", retry_after_s=0.0)
        closed = self.health.close_day(self.cfg.open_day)
        log.error("ready2order: no daily report is open; the mirror waits: %s", closed.fix)
        return Unreachable("no daily report is open")  # the stopped mirror paces it, not this record

    def _failed(self, answer: r2o.Failure, context: str = "") -> Outcome:
        """A failure the loop retries, waits for or stops on; never a rejection."""
        match answer:
            case r2o.Unauthorized(status, message):
                self.health.refuse(f"ready2order answered {status}: {message}", answer.fix())
                log.error("ready2order refuses the token (%d): %s", status, answer.fix())
                return Unreachable(f"unauthorized ({status})")  # the stopped mirror probes meanwhile
            case r2o.RateLimited(wait_s, message):
                self.health.rate_limited(wait_s)
                log.warning("ready2order: %s; pausing the mirror %.0f s", message, wait_s)
                return RateLimited(wait_s, message)
            case r2o.Unavailable(reason, maybe_applied, status, retry_after):
                self.health.problem(context or reason)
                if maybe_applied:
                    return Ambiguous(reason, True, retry_after, status)
                return Unreachable(context or reason, retry_after)
            case r2o.Refused(status, message, _code):
                self.health.problem(context or message)
                return Unreachable(context or f"{status}: {message}")
            case _:  # pragma: no mutate
                # mypy checks that every Failure has its case above; none reaches this one
                assert_never(answer)  # pragma: no mutate

    async def spend(self) -> None:
        """Wait for the bucket before a request beyond the one the loop spent for this step."""
        while not self.rate_limit.take():
            await asyncio.sleep(max(self.rate_limit.wait_s(), 0.01))

    # --- settling --------------------------------------------------------------------------------------

    async def settle(self, record: OutboxRow) -> Settled | Outcome:
        early = self.landing.wait_s(record.id)
        if early > 0:
            return Wait(early, "waiting until its last attempt can no longer land, then searching for it")
        found = await self._search(record)
        crashpoint("after_search", self.name)
        if not isinstance(found, list):
            return found
        if not found:
            log.info("sale %s: no invoice with its reference; sending it again", record.ref)
            # The search proved it: should the next request wait for the bucket, no second search.
            self.store.not_sent([record])
            return NotBooked(True)
        live = [i for i in found if not i.cancelled]
        invoice = (live or found)[0]
        if len(live) > 1:
            log.error(
                "sale %s has %d invoices with its reference (%s): cancel all but one in ready2order",
                record.ref,
                len(live),
                ", ".join(i.number for i in live),
            )
        receipt = Receipt(invoice.id, invoice.number, invoice.total, found=True)
        built = build_request(record.ref, record.payload, self.cfg)
        if isinstance(built, InvoiceRequest) and receipt.total != built.total:
            return Unclear(_mismatch(record, receipt, built))
        log.info("sale %s: its earlier attempt was applied: %s", record.ref, receipt.describe())
        self.health.working()
        return Booked(receipt)

    async def _search(self, record: OutboxRow) -> list[r2o.Invoice] | Settled | Outcome:
        """Every invoice whose external reference is the record's, in its training mode, in the window. The
        server's clock (its Date header) may only become known with the answer: a window it widens is
        searched again."""
        window = self.window(record)
        while True:
            found = await self._search_in(record, *window)
            wider = self.window(record)
            if not isinstance(found, list) or wider == window:
                return found
            log.info("sale %s: the server's clock widens the search to %s..%s", record.ref, *wider)
            window = wider
            await self.spend()

    async def _search_in(
        self, record: OutboxRow, date_from: str, date_to: str
    ) -> list[r2o.Invoice] | Settled | Outcome:
        training = training_of(record.payload)
        found: list[r2o.Invoice] = []
        offset = 0
        while True:
            if offset:
                await self.spend()
            page = await self.client.search_invoices(
                record.ref,
                date_from=date_from,
                date_to=date_to,
                test_mode=training,
                offset=offset,
                limit=SEARCH_PAGE,
            )
            if isinstance(page, r2o.Refused):
                return Unclear(
                    f"the search for its reference was refused ({page.status}: {page.message}); look for an "
                    f"invoice with reference {record.ref} in ready2order, then taptill settle {record.ref} "
                    "--booked (or --not-booked)"
                )
            if not isinstance(page, r2o.Found):
                return self._failed(page, f"cannot search for its invoice: {r2o.describe(page)}")
            # a storno carries its original's reference: it is that invoice's undoing, not another invoice
            found += [
                i
                for i in page.invoices
                if i.reference == record.ref and i.test_mode == training and i.cancels is None
            ]
            offset += len(page.invoices)
            if not page.invoices or offset >= page.count:
                return found
            if offset >= SEARCH_MAX:
                return Unclear(
                    f"the search for its reference lists over {SEARCH_MAX} invoices; look for reference "
                    f"{record.ref} in ready2order, then taptill settle {record.ref} --booked (or "
                    "--not-booked)"
                )

    def window(self, record: OutboxRow) -> tuple[str, str]:
        """The search's dateFrom and dateTo (whole days, ``YYYY-MM-DD``): the day before the earliest of
        the sale, its first attempt and now, to the day after the latest of now by either clock."""
        now = self.clock()
        server = self.client.server_time() or now
        earliest = min(now, server, first_attempt_at(record) or now, _epoch(record.created_at) or now)
        latest = max(now, server)
        day = timedelta(days=1)
        start = datetime.fromtimestamp(earliest, UTC).date() - day
        end = datetime.fromtimestamp(latest, UTC).date() + day
        return start.isoformat(), end.isoformat()


def _held(record: OutboxRow, detail: str) -> Each:
    """Hold ``record`` for a person from an attempt (the loop applies a settling's Unclear as a hold)."""
    return Each((((record,), Unclear(detail)),))


def _mismatch(record: OutboxRow, receipt: Receipt, built: InvoiceRequest) -> str:
    return (
        f"{receipt.describe()} totals {receipt.total}, the sale {built.total}: check "
        f"it in ready2order (cancel and bill it by hand if wrong), then taptill settle {record.ref} --booked"
    )


def _epoch(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None
