"""The device loop's view of the stock ledger (StockWatch) on a real journal: a sale subtracted at once, a
count written by another connection seen through data_version, a refused sale's serving given back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from terminal.events import Event, StockChanged
from terminal.journal import Journal
from terminal.yourbarmate.config import StockProduct, YourbarmateConfig
from terminal.yourbarmate.stock import StockLedger, connect
from terminal.yourbarmate.stock_watch import StockWatch

PRODUCTS = {"17": StockProduct("helles", 500, "ml"), "2": StockProduct("gin", 40, "ml")}
CFG = YourbarmateConfig(host="127.0.0.1", port=8470, low_servings=2, products=PRODUCTS)


def sell(journal: Journal, product: str) -> int:
    sale = journal.record_sale(
        token_id="04A1B2C3D4E5F6",
        products=[product],
        amount_cents=-450,
        description="bar",
        tag=None,
        offline=False,
    )
    return sale.id


def counted(path: Path, product: str, amount: int) -> None:
    """Staff's count, written by a connection of its own (as `taptill stock set` does from its process)."""
    ledger = StockLedger(connect(path), PRODUCTS)
    try:
        ledger.set_count(product, amount)
    finally:
        ledger.close()


def test_sales_count_down_to_sold_out_and_a_refused_one_gives_its_serving_back(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal.open(path)
    posted: list[Event] = []
    watch = StockWatch(CFG, journal, posted.append)
    try:
        watch.refresh()
        assert posted == [StockChanged({"helles": 0, "gin": 0}, frozenset({"helles", "gin"}))]
        counted(path, "helles", 1500)  # three servings
        watch.refresh()
        assert posted[-1] == StockChanged({"helles": 3, "gin": 0}, frozenset({"gin"}))
        sold = [sell(journal, "helles") for _ in range(3)]
        # two left: not low (below low_servings = 2 is), but the controller learns how many are left
        assert watch.sold(["helles"]) == StockChanged({"helles": 2, "gin": 0}, frozenset({"gin"}))
        assert watch.sold(["helles"]) == StockChanged({"helles": 1, "gin": 0}, frozenset({"helles", "gin"}))
        gone = watch.sold(["helles"])
        assert gone == StockChanged({"helles": 0, "gin": 0}, frozenset({"helles", "gin"}))
        assert gone.sold_out == frozenset({"helles", "gin"})
        journal.mark_rejected(sold[-1], "the wallet refused it")  # the last serving was never sold
        watch.refresh()
        assert posted[-1] == StockChanged({"helles": 1, "gin": 0}, frozenset({"helles", "gin"}))
        assert watch.figures["helles"].on_hand == 500
        watch.sold(["gin", "cola"])  # counted as the ledger counts it (sold past zero); cola keeps no stock
        assert watch.figures["gin"].on_hand == -40
    finally:
        journal.close()


def test_another_process_writing_the_journal_is_seen_by_its_data_version(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal.open(path)
    posted: list[Event] = []
    watch = StockWatch(CFG, journal, posted.append)

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.ensure_future(watch.run(stop))
        watch.refresh()
        counted(path, "gin", 4000)  # a hundred servings
        async with asyncio.timeout(10):
            while len(posted) < 2:
                await asyncio.sleep(0.05)
        stop.set()
        await task

    try:
        asyncio.run(run())
    finally:
        journal.close()
    assert posted[-1] == StockChanged({"helles": 0, "gin": 100}, frozenset({"helles"}))


def test_without_stop_when_empty_nothing_is_declined_and_an_empty_product_is_only_low(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.sqlite3")
    posted: list[Event] = []
    try:
        StockWatch(
            YourbarmateConfig(host="127.0.0.1", port=1, stop_when_empty=False, products=PRODUCTS),
            journal,
            posted.append,
        ).refresh()
    finally:
        journal.close()
    assert posted == [StockChanged({}, frozenset({"helles", "gin"}))]
