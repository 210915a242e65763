"""The mirror's rules in-process: the real journal, runtime, delivery loop and client against the emulator
over HTTP. Exactly one invoice per booked sale whatever the answers; a search before any re-send, in the
right window (time zones, a day left open, a clock behind) and mode; holds, rejections, stops and pauses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.ready2order import Ready2OrderEmulator
from terminal.outbox.table import settle_held
from terminal.ready2order.health import MirrorHealth, pause_left_s
from terminal.ready2order.invoice import sold_at_text
from terminal.ready2order.runtime import STATUS_CACHE_KEY
from terminal.service.boot_clock import Moment
from tests.r2o_lab import PAYMENT_CASH, PAYMENT_WALLET, MirrorRig, live_invoices, total

pytestmark = pytest.mark.ready2order


@pytest.fixture
def emu() -> Iterator[Ready2OrderEmulator]:
    with Ready2OrderEmulator(rate_limit=100_000) as emulator:
        yield emulator


def run(
    tmp_path: Path, emu: Ready2OrderEmulator, scenario: Callable[[MirrorRig], Awaitable[None]], **kw: Any
) -> MirrorRig:
    async def go() -> MirrorRig:
        rig = MirrorRig(tmp_path, emu, **kw)
        try:
            await scenario(rig)
        finally:
            await rig.aclose()
        return rig

    return asyncio.run(go())


def refs(emu: Ready2OrderEmulator) -> list[str]:
    return [i["invoice_externalReferenceNumber"] for i in live_invoices(emu)]


def test_each_booked_sale_becomes_one_invoice_with_its_lines_and_reference(
    tmp_path: Path, emu: Ready2OrderEmulator
) -> None:
    sales = []

    async def scenario(rig: MirrorRig) -> None:
        sales.extend([rig.sell(), rig.sell("espresso", "cappuccino", "espresso"), rig.sell("topup_10")])
        await rig.drain()

    rig = run(tmp_path, emu, scenario)
    invoices = emu.invoices()
    assert refs(emu) == [s.idempotency_key for s in sales]
    assert [total(i) for i in invoices] == [Decimal("2.50"), Decimal("8.20"), Decimal("10.00")]
    assert [i["paymentMethod_id"] for i in invoices] == [PAYMENT_WALLET, PAYMENT_WALLET, PAYMENT_CASH]
    cart = invoices[1]["items"]
    assert [(i["item_name"], i["item_quantity"], i["item_price"]) for i in cart] == [
        ("Espresso", 2, "2.50"),
        ("Cappuccino", 1, "3.20"),
    ]
    assert invoices[2]["items"][0]["item_price"] == "10.00"  # a top-up: a positive line of credit sold
    assert all(i["invoice_testMode"] is False for i in invoices)
    assert invoices[0]["invoice_text"] == f"taptill Bar 1: sale at {sold_at_text(sales[0].created_at)}"
    assert invoices[2]["invoice_text"].startswith("taptill Bar 1: top-up at ")
    done = rig.records()
    assert [r.state for r in done] == ["done"] * 3 and all(r.attempts == 1 for r in done)
    assert [r.payload["invoice_id"] for r in done] == [i["invoice_id"] for i in invoices]
    assert done[0].payload["invoice_number"] == invoices[0]["invoice_numberFull"]


def test_a_top_up_invoice_names_its_operator_because_the_wallet_server_keeps_no_trace(
    tmp_path: Path, emu: Ready2OrderEmulator
) -> None:
    async def scenario(rig: MirrorRig) -> None:
        rig.sell("topup_10", operator="olga\x1b[2J\nforged")
        rig.sell("espresso")
        await rig.drain()

    run(tmp_path, emu, scenario)
    topup, sale = emu.invoices()
    assert topup["invoice_text"].endswith(" by operator olga forged")  # printable: no control characters
    assert "operator" not in sale["invoice_text"]


@pytest.mark.parametrize(
    ("kind", "fields", "applied"),
    [
        (FaultKind.DROP_AFTER, {}, True),
        (FaultKind.ERROR500_AFTER, {}, True),
        (FaultKind.GARBAGE_TRUNCATED, {}, True),
        (FaultKind.DRIP_AFTER, {"ms": 40, "cap_s": 5}, True),
        (FaultKind.DROP_BEFORE, {}, False),
        (FaultKind.HANG, {"cap_s": 3}, False),
        (FaultKind.ERROR500_BEFORE, {}, False),
        (FaultKind.GARBAGE_HTML, {}, False),
    ],
)
def test_an_attempt_that_may_have_landed_is_searched_for_before_it_is_sent_again(
    tmp_path: Path, emu: Ready2OrderEmulator, kind: FaultKind, fields: dict[str, Any], applied: bool
) -> None:
    emu.faults.inject(kind, route="invoice_create", times=1, **fields)
    sale = []

    async def scenario(rig: MirrorRig) -> None:
        sale.append(rig.sell())
        await rig.drain()

    rig = run(tmp_path, emu, scenario)
    stats = emu.stats()["requests_by_route"]
    assert refs(emu) == [sale[0].idempotency_key], "exactly one invoice"
    assert stats["invoice_search"] >= 1, "settled by searching its reference"
    assert stats["invoice_create"] == (1 if applied else 2), "found: never sent again; not found: once more"
    (record,) = rig.records()
    assert record.state == "done" and record.payload["invoice_id"] == emu.invoices()[0]["invoice_id"]
    assert ("found by its reference" in record.reason) == applied


def test_training_sales_are_training_invoices_searched_in_training_mode(
    tmp_path: Path, emu: Ready2OrderEmulator
) -> None:
    emu.faults.inject(FaultKind.DROP_AFTER, route="invoice_create", times=1)

    async def scenario(rig: MirrorRig) -> None:
        rig.sell()
        await rig.drain()

    run(tmp_path, emu, scenario, training=True)
    (invoice,) = emu.invoices()
    assert invoice["invoice_testMode"] is True and invoice["invoice_numberFull"].startswith("TR")


def test_a_sale_at_the_edge_of_the_accounts_day_is_found(tmp_path: Path) -> None:
    """The account's day is not the terminal's UTC day (an account 12-14 hours away): a search over the
    sale's UTC date alone would miss the invoice and send it twice."""
    east = datetime.now(UTC).hour >= 10
    zone = "Etc/GMT-14" if east else "Etc/GMT+12"
    with Ready2OrderEmulator(timezone=zone, rate_limit=100_000) as far:
        far.faults.inject(FaultKind.DROP_AFTER, route="invoice_create", times=1)

        async def scenario(rig: MirrorRig) -> None:
            rig.sell()
            await rig.drain()

        run(tmp_path, far, scenario)
        today = datetime.now(UTC).date().isoformat()
        utc_only = far.account.search({"dateFrom": today, "dateTo": today, "dateField": "b_dateTime"})
        assert utc_only[1]["count"] == 0, "the invoice lies on another day of the account"  # type: ignore[index]
        assert len(far.invoices()) == 1


def test_a_day_left_open_for_days_does_not_hide_the_invoice(tmp_path: Path, emu: Ready2OrderEmulator) -> None:
    emu.open_day(emu.clock.now() - 3 * 86400)
    emu.faults.inject(FaultKind.DROP_AFTER, route="invoice_create", times=1)

    async def scenario(rig: MirrorRig) -> None:
        rig.sell()
        await rig.drain()

    run(tmp_path, emu, scenario)
    assert len(emu.invoices()) == 1


def test_a_terminal_clock_days_behind_still_finds_its_invoice(
    tmp_path: Path, emu: Ready2OrderEmulator
) -> None:
    """fake-hwclock before NTP: the terminal's wall clock three days behind the server's (whose Date
    header sets the window's end)."""
    import time

    emu.faults.inject(FaultKind.DROP_AFTER, route="invoice_create", times=1)

    async def scenario(rig: MirrorRig) -> None:
        rig.sell()
        await rig.drain()

    run(tmp_path, emu, scenario, clock=lambda: time.time() - 3 * 86400)
    assert len(emu.invoices()) == 1


def test_a_search_that_cannot_tell_holds_the_record_for_a_person(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu.faults.inject(FaultKind.DROP_AFTER, route="invoice_create", times=1)
    monkeypatch.setattr(
        emu.account, "search", lambda params: (400, {"error": True, "msg": "query too short"})
    )

    async def scenario(rig: MirrorRig) -> None:
        sale = rig.sell()
        await rig.drain()
        (record,) = rig.records()
        assert record.hold and record.state == "pending"
        assert "refused (400: query too short)" in record.reason
        assert f"taptill settle {sale.idempotency_key} --booked" in record.reason
        assert settle_held(rig.journal, sale.idempotency_key, booked=True)  # a person found it
        assert rig.records()[0].state == "done"

    run(tmp_path, emu, scenario)
    assert len(emu.invoices()) == 1


def test_a_total_that_differs_is_held_not_ignored(
    tmp_path: Path, emu: Ready2OrderEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = emu.account.create_invoice

    def rounding_server(body: object) -> tuple[int, object]:
        status, inv = real(body)
        assert isinstance(inv, dict)
        return status, {**inv, "invoice_total": 2.4}

    monkeypatch.setattr(emu.account, "create_invoice", rounding_server)

    async def scenario(rig: MirrorRig) -> None:
        rig.sell()
        await rig.drain()
        (record,) = rig.records()
        assert record.hold and "totals 2.4, the sale 2.50" in record.reason
        assert emu.invoices()[0]["invoice_numberFull"] in record.reason

    run(tmp_path, emu, scenario)


def test_a_refusal_is_a_rejection_in_the_servers_words(tmp_path: Path, emu: Ready2OrderEmulator) -> None:
    async def scenario(rig: MirrorRig) -> None:
        rig.sell("cappuccino")
        rig.sell()
        await rig.drain()
        bad, good = rig.records()
        assert bad.state == "rejected" and "item_vatId 9 is not a VAT rate" in bad.reason
        assert bad.reason.startswith("400")
        assert good.state == "done"

    from terminal.ready2order.config import ProductMapping

    products = {"espresso": ProductMapping(111, 2), "cappuccino": ProductMapping(112, 9)}
    run(tmp_path, emu, scenario, products=products)
    assert len(emu.invoices()) == 1


def test_an_unmapped_product_is_held_until_the_mapping_is_fixed(
    tmp_path: Path, emu: Ready2OrderEmulator
) -> None:
    from terminal.ready2order.config import ProductMapping

    async def scenario(rig: MirrorRig) -> None:
        sale = rig.sell("cappuccino")
        await rig.drain()
        (record,) = rig.records()
        assert record.hold and "cappuccino have no [ready2order.products] entry" in record.reason
        assert f"taptill settle {sale.idempotency_key} --not-booked" in record.reason
        assert emu.invoices() == []

    run(tmp_path, emu, scenario, products={"espresso": ProductMapping(111, 2)})


def test_a_closed_day_stops_the_mirror_until_it_is_opened(tmp_path: Path, emu: Ready2OrderEmulator) -> None:
    emu.close_day()

    async def scenario(rig: MirrorRig) -> None:
        rig.sell()
        rig.sell()
        stop = asyncio.Event()
        task = asyncio.ensure_future(rig.runtime.loop.run(stop))
        try:
            while rig.runtime.health.running:
                await asyncio.sleep(0.02)
            cached = rig.journal.cache_get(STATUS_CACHE_KEY)
            assert cached is not None and cached[0]["day_closed"]["reason"] == "no daily report is open"  # type: ignore[index]
            creates = emu.stats()["requests_by_route"]["invoice_create"]
            await asyncio.sleep(0.5)
            assert emu.stats()["requests_by_route"]["invoice_create"] == creates, "stopped means no create"
            assert [r.state for r in rig.records()] == ["pending", "pending"]
            emu.open_day()  # staff open the day; the next probe finds it
        finally:
            stop.set()
            await task
        await rig.drain()

    rig = run(tmp_path, emu, scenario)
    assert len(emu.invoices()) == 2 and [r.state for r in rig.records()] == ["done", "done"]


def test_open_day_opens_it_and_bills(tmp_path: Path, emu: Ready2OrderEmulator) -> None:
    emu.close_day()

    async def scenario(rig: MirrorRig) -> None:
        rig.sell()
        await rig.drain()

    run(tmp_path, emu, scenario, open_day=True)
    assert emu.account.day_is_open() and len(emu.invoices()) == 1


@pytest.mark.parametrize(
    ("token", "status", "fix"),
    [("revoked", 401, "refuses the account token"), ("dev", 403, "not an account token")],
)
def test_a_refused_token_stops_the_mirror_until_a_good_one_is_in_the_file(
    tmp_path: Path, emu: Ready2OrderEmulator, token: str, status: int, fix: str
) -> None:
    bad = emu.developer_token if token == "dev" else "revoked-token"

    async def scenario(rig: MirrorRig) -> None:
        rig.sell()
        stop = asyncio.Event()
        task = asyncio.ensure_future(rig.runtime.loop.run(stop))
        try:
            while rig.runtime.health.running:
                await asyncio.sleep(0.02)
            refused = rig.runtime.health.refused
            assert refused is not None and f"answered {status}" in refused.reason and fix in refused.fix
            assert rig.records()[0].state == "pending" and not rig.records()[0].maybe_sent
            rig.token_file.write_text(emu.account_token + "\n")  # the owner provisions a good token
        finally:
            stop.set()
            await task
        rig.runtime.loop.probe_interval_s = 0.05
        await rig.drain()
        assert bad not in str(rig.journal.cache_get(STATUS_CACHE_KEY))

    run(tmp_path, emu, scenario, token=bad)
    assert len(emu.invoices()) == 1


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_429_pauses_every_request_for_at_least_a_minute_then_the_backlog_drains_in_order(
    tmp_path: Path,
) -> None:
    clock = FakeMonotonic()
    with Ready2OrderEmulator(rate_limit=3) as limited:  # the account's limit reached by others at the venue

        async def scenario(rig: MirrorRig) -> None:
            sales = [rig.sell() for _ in range(6)]
            loop = rig.runtime.loop
            while not limited.rate.refused:
                await loop._round()  # one request a round: this clock stands still within one
                clock.now += 1
            assert len(limited.invoices()) == 3 and limited.rate.refused == 1
            assert loop._blocked_s() >= 60 and rig.runtime.destination.rate_limit.wait_s() >= 60
            health = rig.runtime.health
            assert health.paused is not None and health.paused[1] >= 60
            assert 59 <= pause_left_s(health.as_json()) <= health.paused[1]
            requests = limited.stats()["requests"]
            clock.now += 58
            assert await loop._round() == 0 and limited.stats()["requests"] == requests, (
                "paused: nothing sent"
            )
            clock.now += 7
            limited.clock.advance(66)  # the server's block is over too
            while rig.waiting():
                await loop._round()
                clock.now += 1
                limited.clock.advance(1)
            assert refs(limited) == [s.idempotency_key for s in sales], "in order, each once"

        run(tmp_path, limited, scenario, monotonic=clock)


def test_what_is_left_of_a_429_pause_follows_the_boot_clock_whatever_the_wall_clock_does() -> None:
    began = 1_700_000_000.0
    health = MirrorHealth(clock=lambda: began)
    health.rate_limited(60.0)
    assert health.paused is not None
    start = health.paused[0]
    state = json.loads(json.dumps(health.as_json()))  # as status and doctor read it from the journal

    def at(wall_step_s: float, uptime_s: float, boot: str = start.boot) -> Moment:
        return Moment(began + wall_step_s + uptime_s, boot, start.uptime + uptime_s)

    day = 86_400.0
    assert pause_left_s(state, at(0, 5)) == pytest.approx(55)
    assert pause_left_s(state, at(+day, 5)) == pytest.approx(55), "a step ahead does not end it"
    assert pause_left_s(state, at(-day, 5)) == pytest.approx(55), "a step back does not extend it"
    assert pause_left_s(state, at(-day, 61)) == 0.0, "over after its minute, however far the clock went back"
    # another boot (or a kernel without a boot id): the wall clock, never more than the pause itself
    assert pause_left_s(state, at(-day, 5, boot="other")) == 60.0
    assert pause_left_s(state, at(+day, 5, boot="other")) == 0.0
    assert pause_left_s({"paused": None}) == 0.0 and pause_left_s({"paused_until": 9e99}) == 0.0
