"""Tells the controller what the stock ledger says is sold out or low (``StockChanged``), whenever that may
have changed: at start, after an event the webhook committed, after a sale, and when another process
(``taptill stock receive|set``) wrote the journal.

The figures are read on the device loop's own journal connection, in the loop: a handful of indexed
queries per mapped product. After a sale they are read at once and handed to the controller before
the tap's answer (``changed``), so the next card cannot buy the serving it took; after a webhook event
a moment later (``SOON_S``, coalesced). Writes by other connections (the webhook's thread, another
process) show in ``PRAGMA data_version``, which costs no read of any table: it is looked at every
``POLL_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable

from terminal.events import Event, StockChanged
from terminal.journal import Journal, JournalError
from terminal.yourbarmate.config import YourbarmateConfig
from terminal.yourbarmate.stock import Figures, stock_figures

log = logging.getLogger(__name__)

POLL_S = 2.0  # how often another connection's writes (taptill stock, the webhook) are looked for
SOON_S = 0.05  # a refresh asked for during a tap runs this much later, after its screen is shown


def stock_marks(figures: list[Figures], stop_when_empty: bool) -> StockChanged:
    """The controller's view of ``figures``: sold out (not sold) only with ``stop_when_empty``;
    otherwise a product with nothing left is only marked low, and sold on."""
    gone = frozenset(f.product for f in figures if f.sold_out)
    low = frozenset(f.product for f in figures if f.low or f.sold_out)
    return StockChanged(gone if stop_when_empty else frozenset(), low)


class StockWatch:
    """Reads the figures through ``journal`` and posts a ``StockChanged`` when the sets change."""

    def __init__(self, cfg: YourbarmateConfig, journal: Journal, post: Callable[[Event], None]) -> None:
        self.cfg = cfg
        self.journal = journal
        self.post = post
        self.last: StockChanged | None = None  # what the controller was last told
        self._version: int | None = None
        self._soon: asyncio.TimerHandle | None = None

    def refresh(self) -> None:
        """Read the figures now; post them if the sets differ from the last posted (errors logged)."""
        marks = self.changed()
        if marks is not None:
            self.post(marks)

    def changed(self) -> StockChanged | None:
        """Read the figures now: the new sets when they differ from the last told, else None (also when
        the journal cannot be read: the last figures stand, and the error is logged)."""
        try:
            self._version = self._data_version()
            figures = stock_figures(self.journal.query, self.cfg.products, self.cfg.low_servings)
        except (sqlite3.Error, JournalError) as exc:
            log.error("cannot read the stock ledger: %s; the last figures stand", exc)
            return None
        marks = stock_marks(figures, self.cfg.stop_when_empty)
        if marks == self.last:
            return None
        if self.last is None or marks.sold_out != self.last.sold_out:
            log.info("stock: sold out %s", ", ".join(sorted(marks.sold_out)) or "nothing")
        self.last = marks
        return marks

    def soon(self) -> None:
        """Refresh a moment from now (coalesced): after a sale, after an event the webhook committed."""
        if self._soon is None:
            self._soon = asyncio.get_running_loop().call_later(SOON_S, self._refresh_soon)

    def _refresh_soon(self) -> None:
        self._soon = None
        self.refresh()

    def close(self) -> None:
        """No refresh after this (the journal is about to close)."""
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: refresh whenever another connection has written the journal."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)
            if stop.is_set():
                return
            try:
                changed = self._data_version() != self._version
            except (sqlite3.Error, JournalError) as exc:
                log.debug("cannot read the journal's data_version: %s", exc)
                continue
            if changed:
                self.refresh()

    def _data_version(self) -> int:
        return int(self.journal.query("PRAGMA data_version")[0][0])
