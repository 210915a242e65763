"""Tells the controller what the stock ledger says is sold out or low (``StockChanged``), whenever that may
have changed: at start, after each sale, after an event the webhook committed, and when another process
(``taptill stock receive|set``, ``taptill settle``) wrote the journal.

The ledger's figures cost a scan of the sales since each product's last count (milliseconds per
thousand sales), too much for every tap's path. So they are read in full at start, a moment after each
webhook event (within ``SOON_S``, coalesced), when ``PRAGMA data_version`` says another connection wrote the
journal (looked at every ``POLL_S``; it reads no table) and every ``FULL_EVERY_S`` besides (a sale the
wallet refused after the tap gives its serving back then). A sale this terminal journals is subtracted
in memory at once (``sold``) and handed to the controller before the tap's answer, so the next card
cannot buy the serving it took; unless a full read while its request was out counted it already (a
serving is never taken twice). A full read's word is posted to the device loop's queue, so it may arrive
after a sale's newer word: each word is numbered, and the controller drops one older than it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from terminal.events import Event, StockChanged
from terminal.journal import Journal, JournalError
from terminal.model import ProductId
from terminal.yourbarmate.config import YourbarmateConfig
from terminal.yourbarmate.stock import Figures, stock_figures

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often another connection's writes (taptill stock, the webhook) are looked for
# A read asked for by a webhook event runs this much later, coalesced with the events after it: an event
# moves only what is ordered today (staff's receive moves it on hand), so waiting costs nothing, while a
# read per event at 20 events/s would take loop time from the taps.
SOON_S = 1.0
FULL_EVERY_S = 30.0  # the figures are read in full at least this often (refused sales give servings back)


def stock_marks(figures: Iterable[Figures], stop_when_empty: bool) -> StockChanged:
    """The controller's view of ``figures``: servings left of each product (none sold beyond them) only
    with ``stop_when_empty``; otherwise a product with nothing left is only marked low, and sold on."""
    figures = list(figures)
    left = {f.product: f.servings_left for f in figures} if stop_when_empty else {}
    low = frozenset(f.product for f in figures if f.low or f.sold_out)
    return StockChanged(left, low)


class StockWatch:
    """Keeps the figures of every mapped product and says when their sets change; used in the loop."""

    def __init__(self, cfg: YourbarmateConfig, journal: Journal, post: Callable[[Event], None]) -> None:
        self.cfg = cfg
        self.journal = journal
        self.post = post
        self.figures: dict[str, Figures] = {}  # by wallet product id, as last read and since sold
        self.last: StockChanged | None = None  # what the controller was last told
        self._through = 0  # the highest sale id the last full read saw: sales up to it are counted
        self._seq = 0  # numbers what the controller is told: a posted word queued behind newer is stale
        self._version: int | None = None
        self._read_at = 0.0  # time.monotonic() of the last full read
        self._soon: asyncio.TimerHandle | None = None

    def refresh(self) -> None:
        """Read the figures in full now; post the sets if they changed (errors logged, figures kept)."""
        try:
            self._version = self._data_version()
            # Read in the same turn of the loop as the figures: no sale of this terminal comes between.
            through = int(self.journal.query("SELECT COALESCE(MAX(id), 0) FROM sales")[0][0])
            read = stock_figures(self.journal.query, self.cfg.products, self.cfg.low_servings)
        except (sqlite3.Error, JournalError) as exc:
            log.error("cannot read the stock ledger: %s; the last figures stand", exc)
            return
        self._read_at, self._through = time.monotonic(), through
        self.figures = {f.product: f for f in read}
        marks = self._marks()
        if marks is not None:
            self.post(marks)

    def sold(self, key: str, poured: Iterable[ProductId]) -> StockChanged | None:
        """Sale ``key``, pouring one serving of each of ``poured``, was journaled (pending or booked):
        subtracted in memory, unless the last full read counted it already (it ran while the sale's
        request was out); the figures that count it (None before any read). The caller hands them to
        the controller itself, before its next event."""
        try:
            sale = self.journal.sale_by_key(key)
        except (sqlite3.Error, JournalError) as exc:
            log.debug("cannot read sale %s back: %s", key, exc)
            sale = None  # subtracted: one serving too few for a moment is safer than one too many
        if sale is not None and sale.id <= self._through:
            # The read that counted it posted its figures to the loop's queue, where they may wait behind
            # a tap queued while this sale's request was out, which would then be sold the servings this
            # sale took (two quick taps of two beers with three servings left were both sold). Handed over
            # now; the controller takes a repeat as nothing new.
            return self.last
        for pid in poured:
            f = self.figures.get(str(pid))
            if f is not None:
                self.figures[f.product] = replace(f, on_hand=f.on_hand - f.serving, sold=f.sold + f.serving)
        return self._marks()

    def _marks(self) -> StockChanged | None:
        marks = stock_marks(self.figures.values(), self.cfg.stop_when_empty)
        if marks == self.last:
            return None
        self._seq += 1
        marks = replace(marks, seq=self._seq)
        if self.last is None or marks.sold_out != self.last.sold_out:
            log.info("stock: sold out %s", ", ".join(sorted(marks.sold_out)) or "nothing")
        self.last = marks
        return marks

    def soon(self) -> None:
        """Read in full a moment from now (coalesced): after an event the webhook committed."""
        if self._soon is None:
            self._soon = asyncio.get_running_loop().call_later(SOON_S, self._refresh_soon)

    def _refresh_soon(self) -> None:
        self._soon = None
        self.refresh()

    def close(self) -> None:
        """No read after this (the journal is about to close)."""
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: read in full when another connection wrote the journal, or now and then."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)
            if stop.is_set():
                return
            try:
                written = self._data_version() != self._version
            except (sqlite3.Error, JournalError) as exc:
                log.debug("cannot read the journal's data_version: %s", exc)
                continue
            if written or time.monotonic() - self._read_at >= FULL_EVERY_S:
                self.refresh()

    def _data_version(self) -> int:
        return int(self.journal.query("PRAGMA data_version")[0][0])
