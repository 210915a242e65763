"""PriceBoard (pure, fake clock) and PricePoller (against the emulator, and with a scripted source)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.partybroker import PartybrokerEmulator
from terminal.partybroker.client import PartybrokerClient
from terminal.partybroker.outcomes import (
    Ambiguous,
    Drink,
    DrinkRef,
    Drinks,
    DrinksOutcome,
    Sale,
    Unauthorized,
)
from terminal.partybroker.price_board import PriceBoard, PricePoller, ladder_step
from terminal.service.secret import Secret

pytestmark = pytest.mark.partybroker
T = TypeVar("T")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drink(id: int, price: int, ext: str | None = None, currency: str = "EUR") -> Drink:
    return Drink(id, ext, f"drink {id}", price, currency)


MAPPING = {
    "espresso": DrinkRef(id=145),
    "cappuccino": DrinkRef(external_id="POS_222"),
    "tea": DrinkRef(id=148),
}


def board(clock: FakeClock, interval: float = 60.0) -> PriceBoard:
    return PriceBoard(MAPPING, interval, currency="EUR", clock=clock)


# --- the pure board --------------------------------------------------------------------------------------


def test_a_full_list_sets_prices_by_id_and_external_id_and_warns_about_missing_drinks() -> None:
    clock = FakeClock()
    b = board(clock)
    assert b.apply_list([drink(145, 290), drink(146, 310, "POS_222"), drink(147, 210)])
    assert b.price("espresso") is not None and b.price("espresso").price_cents == 290  # type: ignore[union-attr]
    assert b.price("cappuccino").price_cents == 310  # type: ignore[union-attr]
    assert b.price("tea") is None
    assert b.missing == ("tea",)
    (warning,) = b.warnings()
    assert "tea" in warning and "Premium" in warning
    assert [p.product_id for p in b.prices()] == ["espresso", "cappuccino"]
    assert not b.apply_list([drink(145, 290), drink(146, 310, "POS_222"), drink(147, 210)])  # unchanged


def test_prices_older_than_two_intervals_are_stale() -> None:
    clock = FakeClock()
    b = board(clock)
    assert b.stale_products() == {"espresso", "cappuccino", "tea"}  # nothing fetched yet
    b.apply_list([drink(145, 290), drink(146, 310, "POS_222"), drink(148, 100)])
    assert not b.is_stale()
    clock.now = 120.0
    assert not b.is_stale()
    clock.now = 120.1
    assert b.stale_products() == {"espresso", "cappuccino", "tea"}
    assert b.price("espresso").stale  # type: ignore[union-attr]
    b.apply_sale([drink(145, 300)])  # a POST answer refreshes only what it names, at once
    assert b.price("espresso") == b.price("espresso")
    assert b.price("espresso").price_cents == 300 and not b.price("espresso").stale  # type: ignore[union-attr]
    assert b.stale_products() == {"cappuccino", "tea"}


def test_a_post_answer_never_marks_drinks_missing() -> None:
    b = board(FakeClock())
    b.apply_list([drink(145, 290), drink(146, 310, "POS_222"), drink(148, 100)])
    assert b.apply_sale([drink(146, 330, "POS_222")])
    assert b.missing == () and b.price("tea") is not None


def test_currency_mismatch_is_a_warning() -> None:
    b = board(FakeClock())
    b.apply_list([drink(145, 290, currency="CHF"), drink(146, 1, "POS_222"), drink(148, 1)])
    (warning,) = b.warnings()
    assert "CHF" in warning and "EUR" in warning


def test_batch_sums_quantities_per_drink_and_names_unmapped_products() -> None:
    b = PriceBoard({**MAPPING, "doppio": DrinkRef(id=145)}, 60.0)
    batch = b.batch(
        [("espresso", 2), ("doppio", 1), ("cappuccino", 1), ("water", 3), ("espresso", 1), ("water", 1)]
    )
    assert batch.sales == (Sale(DrinkRef(id=145), 4), Sale(DrinkRef(external_id="POS_222"), 1))
    assert batch.unmapped == ("water",)


def test_ladder_step_is_the_nearest_price_not_above_the_market() -> None:
    steps = [(101, 200), (102, 250), (103, 300)]
    assert ladder_step(299, steps) == (102, 250)
    assert ladder_step(300, steps) == (103, 300)
    assert ladder_step(1000, steps) == (103, 300)
    assert ladder_step(199, steps) is None


# --- the poller with a scripted source: backoff bounds, never raises ---------------------------------


class Scripted:
    def __init__(self, outcomes: list[DrinksOutcome | Exception]) -> None:
        self.outcomes = outcomes

    async def drinks(self) -> DrinksOutcome:
        item = self.outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def run_poller(poller: PricePoller, sleeps: list[float], polls: int) -> None:
    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) >= polls:
            raise asyncio.CancelledError

    poller._sleep = fake_sleep

    async def go() -> None:
        with pytest.raises(asyncio.CancelledError):
            await poller.run()

    asyncio.run(go())


def test_failures_back_off_but_never_wait_past_one_interval_or_two_with_retry_after() -> None:
    clock = FakeClock()
    ok = Drinks((drink(145, 290),))
    outcomes: list[DrinksOutcome | Exception] = [Ambiguous("x") for _ in range(6)]
    outcomes += [RuntimeError("bug"), Unauthorized("no"), Ambiguous("slow down", retry_after=3600), ok]
    seen: list[PriceBoard] = []
    poller = PricePoller(Scripted(outcomes), board(clock), seen.append, clock=clock, rng=random.Random(1))
    sleeps: list[float] = []
    run_poller(poller, sleeps, polls=10)
    assert all(0 < s <= 60 for s in sleeps[:8])
    assert sleeps[0] < sleeps[2] < sleeps[4]  # growing
    assert sleeps[7] == 60  # 401: once per interval
    assert 60 < sleeps[8] <= 120  # Retry-After honoured only up to 2 intervals (logout comes at 3)
    assert sleeps[9] == 60
    assert poller.status.failures == 9 and poller.status.consecutive_failures == 0
    assert poller.status.warnings  # espresso found, the others missing
    assert seen and seen[-1].price("espresso") is not None


def test_a_failing_callback_does_not_stop_the_poller() -> None:
    clock = FakeClock()

    def broken(b: PriceBoard) -> None:
        raise ValueError("screen trouble")

    ok = Drinks((drink(145, 290),))
    poller = PricePoller(Scripted([ok, ok, ok]), board(clock), broken, clock=clock)
    sleeps: list[float] = []
    run_poller(poller, sleeps, polls=3)
    assert poller.status.polls == 3


# --- the poller against the emulator: the session stays alive, prices reach the callback ---------------


def run(coro: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await coro

    return asyncio.run(wrapper())


INTERVAL = 0.2


async def poll_for(
    emu: PartybrokerEmulator,
    seconds: float,
    poller_board: PriceBoard,
    seen: list[dict[str, int]],
    during: float | None = None,
    price: int = 0,
) -> PricePoller:
    async with PartybrokerClient(emu.base_url, emu.party_id, emu.username, Secret("demo"), timeout_s=1) as c:

        def on_prices(b: PriceBoard) -> None:
            seen.append({p.product_id: p.price_cents for p in b.prices()})

        poller = PricePoller(c, poller_board, on_prices)
        task = asyncio.create_task(poller.run())
        if during is not None:
            await asyncio.sleep(during)
            emu.set_price(146, price)
            await asyncio.sleep(seconds - during)
        else:
            await asyncio.sleep(seconds)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return poller


EMU_MAPPING = {
    "espresso": DrinkRef(id=145),
    "helles": DrinkRef(external_id="234567"),
    "radler": DrinkRef(id=148),
}


def test_the_poller_keeps_the_session_alive_through_many_silent_intervals() -> None:
    with PartybrokerEmulator(price_interval_s=INTERVAL, fall_cents=0) as emu:
        seen: list[dict[str, int]] = []
        poller = run(poll_for(emu, 8 * INTERVAL, PriceBoard(EMU_MAPPING, INTERVAL), seen))
        stats = emu.stats()
        assert stats["logouts"] == 0 and stats["logins"] == 1
        assert poller.status.polls >= 4
        assert sum(emu.units_sold().values()) == 0  # no sales: only the polls kept it alive
        assert seen[-1] == {"espresso": 290, "helles": 230, "radler": 250}
        assert poller.status.warnings == ()


def test_a_client_that_stops_polling_is_logged_out() -> None:
    # The control for the test above: the same silence without the poller is noticed by the emulator.
    with PartybrokerEmulator(price_interval_s=INTERVAL) as emu:

        async def once_then_silence() -> None:
            async with PartybrokerClient(emu.base_url, emu.party_id, emu.username, Secret("demo")) as c:
                assert isinstance(await c.drinks(), Drinks)
                await asyncio.sleep(5 * INTERVAL)

        run(once_then_silence())
        assert emu.logouts == 1


def test_a_price_change_on_the_server_reaches_the_callback() -> None:
    with PartybrokerEmulator(price_interval_s=INTERVAL, fall_cents=0) as emu:
        seen: list[dict[str, int]] = []
        b = PriceBoard(EMU_MAPPING, INTERVAL)
        run(poll_for(emu, 6 * INTERVAL, b, seen, during=2 * INTERVAL, price=555))
        assert seen[0]["helles"] == 230
        assert seen[-1]["helles"] == 555


def test_without_premium_the_fourth_drink_is_warned_about() -> None:
    with PartybrokerEmulator(price_interval_s=INTERVAL, premium=False) as emu:
        seen: list[dict[str, int]] = []
        poller = run(poll_for(emu, 2 * INTERVAL, PriceBoard(EMU_MAPPING, INTERVAL), seen))
        assert poller.board.missing == ("radler",)
        (warning,) = poller.status.warnings
        assert "radler" in warning and "id 148" in warning
        assert set(seen[-1]) == {"espresso", "helles"}


def test_the_poller_rides_out_server_errors_and_still_keeps_the_session() -> None:
    with PartybrokerEmulator(price_interval_s=INTERVAL, fall_cents=0) as emu:
        emu.faults.inject(FaultKind.ERROR500_BEFORE, times=3)
        seen: list[dict[str, int]] = []
        poller = run(poll_for(emu, 8 * INTERVAL, PriceBoard(EMU_MAPPING, INTERVAL), seen))
        assert poller.status.failures == 3
        assert poller.status.last_success_at is not None and poller.status.last_problem is None
        assert emu.logouts == 0
        assert seen[-1]["espresso"] == 290
