"""Partybroker inside a running terminal: the price poller, the sales reports and the price board."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from terminal.config import Config
from terminal.events import Event, PricesChanged
from terminal.journal import Journal, SaleRecord
from terminal.model import Product
from terminal.outbox.loop import DeliveryLoop
from terminal.outbox.schedule import Backoff, Schedule
from terminal.outbox.table import OutboxRow, OutboxTable
from terminal.partybroker.client import PartybrokerClient
from terminal.partybroker.config import PartybrokerConfig
from terminal.partybroker.destination import FLUSH_INTERVAL_S, RETRY_MAX_S, PartybrokerDestination
from terminal.partybroker.market import market_view
from terminal.partybroker.price_board import PriceBoard, PricePoller
from terminal.partybroker.report_outbox import DESTINATION, ReportOutbox
from terminal.service.credentials import PARTYBROKER_PASSWORD
from terminal.service.secret import read_secret

log = logging.getLogger(__name__)

STATUS_CACHE_KEY = "partybroker_status"


class PartybrokerRuntime:
    """Owns the Partybroker client and its two background tasks for one terminal."""

    def __init__(
        self,
        cfg: Config,
        pb: PartybrokerConfig,
        journal: Journal,
        post: Callable[[Event], None],
        catalog: tuple[Product, ...],
    ) -> None:
        self.cfg = cfg
        self.pb = pb
        self.journal = journal
        self.post = post
        self.catalog = catalog
        password = read_secret(pb.password_file, PARTYBROKER_PASSWORD.credential)
        self.client = PartybrokerClient(pb.base_url, pb.party_id, pb.username, password)
        self.board = PriceBoard.from_config(pb, currency=cfg.terminal.currency)
        self.poller = PricePoller(self.client, self.board, self._prices_changed)
        self.outbox = ReportOutbox(journal, pb)
        destination = PartybrokerDestination(OutboxTable(journal, DESTINATION), self.client, self.poller)
        self.sender: DeliveryLoop[OutboxRow] = DeliveryLoop(
            destination,
            schedule=Schedule(Backoff(max_s=RETRY_MAX_S)),
            idle_look_s=FLUSH_INTERVAL_S,
        )
        self._last_status: object = None

    def reports_for(self, sale: SaleRecord) -> Sequence[tuple[str, Sequence[object]]]:
        return self.outbox.statements_for(sale)

    def sale_settled(self) -> None:
        self.sender.wake()

    def publish(self, catalog: tuple[Product, ...] | None = None) -> None:
        """Push the current prices to the controller (also after the wallet catalog changed)."""
        if catalog is not None:
            self.catalog = catalog
        view = market_view(self.board, self.pb, self.catalog, self.cfg.terminal.products)
        self.post(PricesChanged(view.lines, view.stale, view.charge))

    def _prices_changed(self, _board: PriceBoard) -> None:
        self.publish()
        self._store_status()

    def _store_status(self) -> None:
        st = self.poller.status
        status = {
            "warnings": list(st.warnings),
            "last_problem": st.last_problem,
            "updated_at": time.time(),
        }
        if status != self._last_status:
            self._last_status = status
            try:
                self.journal.cache_put(STATUS_CACHE_KEY, status)
            except Exception:  # status is informational; a full disk must not stop the prices
                log.exception("cannot store the Partybroker status")

    async def run(self, stop: asyncio.Event) -> None:
        self.publish()
        tasks = [asyncio.ensure_future(self.poller.run()), asyncio.ensure_future(self.sender.run(stop))]
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.client.aclose()
