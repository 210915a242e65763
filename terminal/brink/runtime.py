"""The POS payments inside a running table terminal: their own Brink client, their delivery loop and status.

The payments run beside the wallet and never delay a tap: a table sale's ApplyPayment records are
journaled with the sale's ``done`` and delivered from here in the background, on a client (a connection)
of their own, so a slow ApplyPayment never holds up the bill a tap reads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Sequence

from terminal.brink.business_date import business_date
from terminal.brink.client import BrinkClient
from terminal.brink.config import BrinkConfig
from terminal.brink.destination import BrinkPaymentDestination
from terminal.brink.health import PosHealth
from terminal.brink.outcomes import AccessDenied
from terminal.brink.payment_outbox import DESTINATION, PaymentOutbox, payment_of
from terminal.journal import Journal, SaleRecord
from terminal.outbox.loop import DeliveryLoop
from terminal.outbox.schedule import Backoff, Schedule
from terminal.outbox.table import OutboxRow, OutboxTable, rows
from terminal.service.credentials import BRINK_ACCESS_TOKEN, BRINK_LOCATION_TOKEN
from terminal.service.secret import Secret, SecretError, read_secret

log = logging.getLogger(__name__)

# Where the running terminal keeps, for `taptill status` and `doctor`: {"pid", PosHealth.as_json()…}
STATUS_CACHE_KEY = "brink_status"
RETRY_MAX_S = 60.0
PROBE_INTERVAL_S = 30.0  # while PAR refuses the tokens: how often the files are read again and tried


class BrinkPaymentRuntime:
    """Owns the payments' Brink client and delivery loop for one terminal (tender ``tender_id``, its
    ``[table] terminal_id``); the probe asks GetParty for ``probe_table`` when no record names a table."""

    def __init__(
        self,
        cfg: BrinkConfig,
        journal: Journal,
        access_token: Secret,
        location_token: Secret,
        *,
        tender_id: int,
        terminal_id: str,
        probe_table: int = 1,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``monotonic`` and ``clock`` (s) are injectable for tests."""
        self.cfg = cfg
        self.journal = journal
        self.probe_table = probe_table
        self.clock = clock
        self.client = BrinkClient(
            cfg.url, access_token, location_token, cfg.timeout_s, max_answer_bytes=cfg.max_answer_bytes
        )
        self.health = PosHealth(on_change=self._store_status, clock=clock)
        self.outbox = PaymentOutbox(journal, tender_id, terminal_id)
        self.destination = BrinkPaymentDestination(
            OutboxTable(journal, DESTINATION), self.client, self.health, monotonic=monotonic
        )
        self.loop: DeliveryLoop[OutboxRow] = DeliveryLoop(
            self.destination,
            schedule=Schedule(Backoff(max_s=RETRY_MAX_S), monotonic=monotonic),
            clock=clock,
            online=lambda: self.health.running,
            probe=self.probe,
            probe_interval_s=PROBE_INTERVAL_S,
        )
        self._store_status()

    def records_for(self, sale: SaleRecord) -> Sequence[tuple[str, Sequence[object]]]:
        """The table sale's payment records, committed with its ``done`` (the wallet's store calls this)."""
        return self.outbox.statements_for(sale)

    def sale_settled(self) -> None:
        self.loop.wake()

    async def probe(self) -> bool:
        """While PAR refuses the tokens: read their files anew and ask GetParty once (any answer but
        "access denied" lets the payments go on)."""
        b = self.cfg
        try:
            access = read_secret(b.access_token_file, BRINK_ACCESS_TOKEN.credential)
            location = read_secret(b.location_token_file, BRINK_LOCATION_TOKEN.credential)
            if self.client.use_tokens(access, location):
                log.warning("read new PAR Brink tokens; trying them")
        except SecretError as exc:
            log.debug("cannot read the PAR Brink tokens again: %s", exc)
        day, table = self._probe_target()
        answer = await self.client.get_party(day, table)
        if not isinstance(answer, AccessDenied):
            self.health.working()
            log.warning("PAR Brink accepts the tokens again: table payments go on")
        return self.health.running

    def _probe_target(self) -> tuple[dt.date, int]:
        """The business date and table of the oldest waiting record, else today's and ``probe_table``."""
        for record in rows(self.journal, DESTINATION, ("pending",)):
            payment = payment_of(record.payload)
            if payment is not None and not record.hold:
                return payment.business_date, payment.table_id
        now = dt.datetime.fromtimestamp(self.clock())
        return business_date(now, self.cfg.business_day_starts), self.probe_table

    def _store_status(self) -> None:
        try:
            self.journal.cache_put(STATUS_CACHE_KEY, {"pid": os.getpid(), **self.health.as_json()})
        except Exception:  # status is informational; a full disk must not stop the payments
            log.exception("cannot store the PAR Brink payments' status")

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.loop.run(stop)
        finally:
            await self.client.aclose()
