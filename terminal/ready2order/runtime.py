"""The ready2order mirror inside a running terminal: its client, its delivery loop and its status.

The mirror runs beside the wallet and never delays a tap: a sale's invoice record is journaled with the
sale's ``done`` and delivered from here, in the background, at the configured rate.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence

from terminal.journal import Journal, SaleRecord
from terminal.model import Product
from terminal.outbox.loop import MIN_PAUSE_S, DeliveryLoop
from terminal.outbox.schedule import Backoff, Schedule
from terminal.outbox.table import OutboxRow
from terminal.ready2order import outcomes as r2o
from terminal.ready2order.client import Ready2OrderClient
from terminal.ready2order.config import Ready2OrderConfig
from terminal.ready2order.destination import Ready2OrderDestination
from terminal.ready2order.health import MirrorHealth
from terminal.ready2order.invoice_outbox import InvoiceOutbox
from terminal.ready2order.invoice_table import InvoiceTable
from terminal.service.credentials import READY2ORDER_TOKEN
from terminal.service.secret import Secret, SecretError, read_secret

log = logging.getLogger(__name__)

# Where the running terminal keeps, for `taptill status` and `doctor`: {"pid", MirrorHealth.as_json()…}
STATUS_CACHE_KEY = "ready2order_status"
RETRY_MAX_S = 60.0
IDLE_LOOK_S = 1.0


def probe_interval_s(requests_per_minute: int) -> float:
    """How often a stopped mirror asks again: three of its request slots, between 1 s and a minute."""
    return min(60.0, max(1.0, 3 * 60.0 / requests_per_minute))


class Ready2OrderRuntime:
    """Owns the ready2order client and the mirror's delivery loop for one terminal."""

    def __init__(
        self,
        cfg: Ready2OrderConfig,
        journal: Journal,
        token: Secret,
        *,
        terminal: str,
        catalog: Sequence[Product] = (),
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``monotonic`` and ``clock`` (s) are injectable for tests and the benchmark."""
        self.cfg = cfg
        self.journal = journal
        self.client = Ready2OrderClient(cfg.base_url, token, timeout_s=cfg.timeout_s)
        self.health = MirrorHealth(on_change=self._store_status, clock=clock)
        self.outbox = InvoiceOutbox(cfg, terminal, catalog)
        self.destination = Ready2OrderDestination(
            InvoiceTable(journal), self.client, cfg, self.health, monotonic=monotonic, clock=clock
        )
        self.loop: DeliveryLoop[OutboxRow] = DeliveryLoop(
            self.destination,
            schedule=Schedule(Backoff(max_s=RETRY_MAX_S), monotonic=monotonic),
            clock=clock,
            online=lambda: self.health.running,
            probe=self.probe,
            probe_interval_s=probe_interval_s(cfg.requests_per_minute),
            idle_look_s=IDLE_LOOK_S,
            # the bucket says how long to wait, so a floor of a quarter slot cannot spin; a whole slot's
            # floor would add a slot to every request
            min_pause_s=min(MIN_PAUSE_S, 15.0 / cfg.requests_per_minute),
        )
        self._store_status()

    def records_for(self, sale: SaleRecord) -> Sequence[tuple[str, Sequence[object]]]:
        """The sale's invoice record, committed with its ``done`` (the wallet's store calls this)."""
        return self.outbox.statements_for(sale)

    def catalog_changed(self, catalog: Sequence[Product]) -> None:
        self.outbox.catalog = tuple(catalog)

    def sale_settled(self) -> None:
        self.loop.wake()

    async def probe(self) -> bool:
        """While stopped: read the token file anew and ask whether a daily report is open (one request)."""
        try:
            if self.client.use_token(read_secret(self.cfg.account_token_file, READY2ORDER_TOKEN.credential)):
                log.warning("read a new ready2order account token; trying it")
        except SecretError as exc:
            log.debug("cannot read the ready2order token again: %s", exc)
        await self.destination.spend()
        day = await self.client.day_status()
        if isinstance(day, r2o.DayStatus):
            self.health.token_works()
            if day.open:
                self.health.day_open()
            elif self.cfg.open_day:
                await self.destination.spend()
                if isinstance(await self.client.open_day(), r2o.DayOpened):
                    log.warning("no daily report was open in ready2order: opened one (open_day = true)")
                    self.health.day_open()
            else:
                self.health.close_day(False)
        elif isinstance(day, r2o.Unauthorized):
            self.health.refuse(f"ready2order answered {day.status}: {day.message}", day.fix())
        elif isinstance(day, r2o.RateLimited):
            self.destination.rate_limit.block(day.wait_s)
            self.health.rate_limited(day.wait_s)
        if self.health.running:
            log.warning("ready2order mirror goes on")
        return self.health.running

    def _store_status(self) -> None:
        try:
            self.journal.cache_put(STATUS_CACHE_KEY, {"pid": os.getpid(), **self.health.as_json()})
        except Exception:  # status is informational; a full disk must not stop the mirror
            log.exception("cannot store the ready2order status")

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.loop.run(stop)
        finally:
            await self.client.aclose()
