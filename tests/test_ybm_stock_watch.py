"""The device loop's view of the stock ledger (StockWatch) on a real journal: a sale subtracted at once, a
count written by another connection seen through data_version, a refused sale's serving given back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from terminal.events import Event, StockChanged
from terminal.journal import Journal, SaleRecord
from terminal.yourbarmate.config import StockProduct, YourbarmateConfig
from terminal.yourbarmate.stock import StockLedger, connect
from terminal.yourbarmate.stock_watch import StockWatch

PRODUCTS = {"17": StockProduct("helles", 500, "ml"), "2": StockProduct("gin", 40, "ml")}
CFG = YourbarmateConfig(host="127.0.0.1", port=8470, low_servings=2, products=PRODUCTS)


def sell(journal: Journal, product: str, goods: tuple[str, ...] = ()) -> SaleRecord:
    return journal.record_sale(
        token_id="04A1B2C3D4E5F6",
        products=[product],
        amount_cents=-450,
        description="bar",
        tag=None,
        offline=False,
        goods=goods,
    )


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
        assert watch.sold(sold[0].idempotency_key, ["helles"]) == StockChanged(
            {"helles": 2, "gin": 0}, frozenset({"gin"})
        )
        assert watch.sold(sold[1].idempotency_key, ["helles"]) == StockChanged(
            {"helles": 1, "gin": 0}, frozenset({"helles", "gin"})
        )
        gone = watch.sold(sold[2].idempotency_key, ["helles"])
        assert gone == StockChanged({"helles": 0, "gin": 0}, frozenset({"helles", "gin"}))
        assert gone is not None and gone.sold_out == frozenset({"helles", "gin"})
        journal.mark_rejected(sold[-1].id, "the wallet refused it")  # the last serving was never sold
        watch.refresh()
        assert posted[-1] == StockChanged({"helles": 1, "gin": 0}, frozenset({"helles", "gin"}))
        assert watch.figures["helles"].on_hand == 500
        # counted as the ledger counts it (sold past zero); cola keeps no stock
        watch.sold(sell(journal, "gin").idempotency_key, ["gin", "cola"])
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


def test_a_sale_a_full_read_counted_while_its_request_was_out_is_not_taken_twice(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal.open(path)
    posted: list[Event] = []
    watch = StockWatch(CFG, journal, posted.append)
    try:
        counted(path, "helles", 1000)  # two servings
        watch.refresh()
        first = sell(journal, "helles")  # journaled; its request to the wallet is still out …
        watch.refresh()  # … when a full read runs (a webhook event's, the half-minute one)
        assert watch.figures["helles"].on_hand == 500
        # The answer: counted already, so not subtracted again; but the read's figures wait in the
        # loop's queue behind any tap that came while the request was out, so they come with the sale.
        said = watch.sold(first.idempotency_key, ["helles"])
        assert said == posted[-1] == StockChanged({"helles": 1, "gin": 0}, frozenset({"helles", "gin"}))
        assert said is not None and said.seq == posted[-1].seq  # the same word: a repeat, not a newer one
        second = sell(journal, "helles")  # the next tap: a serving is left for it
        assert watch.sold(second.idempotency_key, ["helles"]) == StockChanged(
            {"helles": 0, "gin": 0}, frozenset({"helles", "gin"})
        )
    finally:
        journal.close()


def test_a_partybroker_ladder_sale_takes_a_serving_of_the_drink_it_poured(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal.open(path)
    posted: list[Event] = []
    watch = StockWatch(CFG, journal, posted.append)
    try:
        counted(path, "helles", 1500)
        watch.refresh()
        # the wallet books the ladder's step "helles-520"; the relay pours helles
        sale = sell(journal, "helles-520", goods=("helles",))
        watch.refresh()
        assert (watch.figures["helles"].on_hand, watch.figures["helles"].sold) == (1000, 500)
        assert watch.sold(sale.idempotency_key, ["helles"]) == posted[-1]  # counted by the read, once
        assert watch.figures["helles"].on_hand == 1000
    finally:
        journal.close()


def test_every_word_is_numbered_so_a_queued_full_read_cannot_undo_a_sale(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal.open(path)
    posted: list[Event] = []
    watch = StockWatch(CFG, journal, posted.append)
    try:
        counted(path, "helles", 1000)
        watch.refresh()  # posted: it waits in the device loop's queue …
        queued = posted[-1]
        said = watch.sold(sell(journal, "helles").idempotency_key, ["helles"])  # … behind this sale's word
        assert isinstance(queued, StockChanged) and said is not None
        assert said.seq > queued.seq > 0
    finally:
        journal.close()
