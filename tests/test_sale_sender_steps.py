"""SaleSender in-process against the wallet emulator on loopback and a real journal: the tap path's answer for
every step's outcome, its settling after a final error answer, and what the sender wires together."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal, SaleRecord
from terminal.model import DeclineReason, SaleState
from terminal.outbox.loop import Result
from terminal.outbox.outcome import (
    Ambiguous,
    Booked,
    Done,
    Each,
    GaveUp,
    NotBooked,
    RateLimited,
    Rejected,
    Stalled,
    Unclear,
    Unreachable,
    Wait,
)
from terminal.service.secret import Secret
from terminal.wallet.client import WalletClient
from terminal.wallet.destination import ALREADY_BOOKED
from terminal.wallet.health import ServerHealth
from terminal.wallet.sale_sender import Delivered, Later, Refusal, SaleSender, attempt_result
from tests.terminal_lab import ERIKA, MAX

T = TypeVar("T")
LOG = "terminal.wallet.sale_sender"
WALL = 1_800_000_000.0


@pytest.mark.parametrize(
    ("result", "answer"),
    [
        (Done(1750, ""), Delivered(1750, already=False)),
        (Done(1750, ALREADY_BOOKED), Delivered(1750, already=True)),
        (Done("1750", "booked"), Delivered(None, already=False)),
        (Booked(1750), Delivered(1750)),
        (Booked("1750"), Delivered(None)),
        (
            Rejected("400: Item in no quota", "bad_product"),
            Refusal(DeclineReason.BAD_PRODUCT, "400: Item in no quota"),
        ),
        (
            NotBooked(False, "never sent", code="server_trouble"),
            Refusal(DeclineReason.SERVER_TROUBLE, "never sent"),
        ),
        (Stalled("journal full", storage=True), Later("journal full", storage=True)),
        # booked, and the journal failed just then: the guest has paid and is served
        (Stalled("disk full", True, Done(1750, "")), Delivered(1750, unrecorded="disk full")),
        (Stalled("disk full", True, Done(1750, ALREADY_BOOKED)), Delivered(1750, True, "disk full")),
        (Stalled("disk full", True, Rejected("400", "bad_product")), Later("disk full", storage=True)),
        (Stalled("disk full", True, Ambiguous("timed out")), Later("disk full", storage=True)),
        (Stalled("card busy"), Later("card busy")),
        (Ambiguous("server error 500", status=500), Later("server error 500", server_error=True, status=500)),
        (Ambiguous("timed out"), Later("timed out")),
        (Each(), Later("several outcomes")),
        (Unreachable("cannot connect", 3.0), Later("cannot connect")),
        (Wait(2.0, "waiting before reconciling"), Later("waiting before reconciling")),
        (Unclear("check the wallet"), Later("check the wallet")),
        (RateLimited(5.0), Later("rate limited")),
        (GaveUp("at most once"), Later("at most once")),
        (NotBooked(True, basis=500), Later("NotBooked")),  # neither detail nor reason: its name
        (Unclear(""), Later("Unclear")),
    ],
)
def test_the_tap_path_is_told_delivered_refused_or_later_for_every_outcome(
    result: Result, answer: Delivered | Refusal | Later
) -> None:
    assert attempt_result(result) == answer


class Lab:
    """A journal, a client and a sender wired to one emulator."""

    def __init__(self, emu: WalletEmulator, path: Path, *, dedupes: bool) -> None:
        self.emu = emu
        self.journal = Journal.open(path / "journal.sqlite3")
        self.client = WalletClient(emu.base_url, Secret(emu.api_token), timeout_s=2.0)
        self.health = ServerHealth()
        self.monotonic = 500.0  # still: a window that opens never closes by itself
        self.sender = SaleSender(
            self.journal,
            self.client,
            self.health,
            dedupes=dedupes,
            clock=lambda: WALL,
            monotonic=lambda: self.monotonic,
        )

    def sale(self, uid: str = MAX, *, balance_before: int | None = None, **options: Any) -> SaleRecord:
        return self.journal.record_sale(
            token_id=uid,
            products=["espresso"],
            amount_cents=-250,
            description="Kaffee",
            tag="coffee",
            offline=False,
            balance_before=balance_before,
            **options,
        )

    def current(self, sale: SaleRecord) -> SaleRecord:
        now = self.journal.sale(sale.id)
        assert now is not None
        return now


@pytest.fixture
def doc() -> Iterator[WalletEmulator]:
    with WalletEmulator.demo("doc", latency="fast") as emu:
        yield emu


def on(emu: WalletEmulator, tmp_path: Path, body: Callable[[Lab], Awaitable[T]], dedupes: bool = False) -> T:
    async def main() -> T:
        lab = Lab(emu, tmp_path, dedupes=dedupes)
        try:
            return await body(lab)
        finally:
            await lab.client.aclose()
            lab.journal.close()

    return asyncio.run(main())


# --- the tap path's first attempt -------------------------------------------------------------------------


def test_a_tap_that_just_read_the_balance_sends_at_once(doc: WalletEmulator, tmp_path: Path) -> None:
    async def body(lab: Lab) -> tuple[object, SaleRecord]:
        sale = lab.sale(balance_before=2000, attempting=True, approved=False)
        return await lab.sender.attempt(sale, fresh_balance=2000), lab.current(sale)

    delivered, sale = on(doc, tmp_path, body)
    assert delivered == Delivered(1750)
    assert (sale.state, sale.approved, sale.balance_after) == (SaleState.DONE, True, 1750)


def test_an_outbox_step_of_a_maybe_sent_sale_settles_first(doc: WalletEmulator, tmp_path: Path) -> None:
    async def body(lab: Lab) -> object:
        return await lab.sender.attempt(lab.sale(balance_before=2000, attempting=True))

    assert on(doc, tmp_path, body) == Later("waiting before reconciling")
    assert doc.transactions() == []


# --- the tap path after a final error answer -----------------------------------------------------------


def test_an_error_answer_found_booked_is_delivered_and_approved(
    doc: WalletEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(lab: Lab) -> tuple[object, SaleRecord, SaleRecord, int]:
        sale = lab.sale(ERIKA, balance_before=750, attempting=True, approved=False)
        stale = lab.journal.sale(sale.id)
        assert stale is not None
        # the tap's own record knows no balance: the journal's (just read and journaled) decides
        stale = type(stale)(**{**stale.__dict__, "balance_before": None})
        with caplog.at_level(logging.INFO, logger=LOG):
            answer = await lab.sender.settle_after_error(stale, 1.0)
        return answer, sale, lab.current(sale), lab.sender.delivered

    answer, sale, now, delivered = on(doc, tmp_path, body)
    assert answer == Delivered(500)
    assert (now.state, now.approved, now.balance_after) == (SaleState.DONE, True, 500)
    assert delivered == 1
    assert [r.getMessage() for r in caplog.records if r.name == LOG] == [
        f"sale {sale.id} booked despite the server's error answer (balance 500)"
    ]
    assert doc.transactions() == []  # never sends anything


@pytest.mark.parametrize(("status", "said"), [(None, 500), (502, 502)])
def test_an_error_answer_not_booked_is_refused_with_the_status_it_had(
    doc: WalletEmulator, tmp_path: Path, status: int | None, said: int
) -> None:
    async def body(lab: Lab) -> tuple[object, SaleRecord, dict[str, int]]:
        sale = lab.sale(ERIKA, balance_before=500, attempting=True, approved=False)
        if status is not None:
            lab.journal.mark_server_error(sale.id, status)
        answer = await lab.sender.settle_after_error(sale, 1.0)
        return answer, lab.current(sale), lab.sender.store.unbooked_errors

    answer, now, counts = on(doc, tmp_path, body)
    detail = f"the server answered its debit with {said} and booked nothing; the tap was declined"
    assert answer == Refusal(DeclineReason.SERVER_TROUBLE, detail)
    assert (now.state, now.reason) == (SaleState.REJECTED, f"server_trouble: {detail}")
    assert counts == {"espresso": 1}


def test_an_error_answer_whose_balance_does_not_tell_stays_for_the_outbox(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    async def body(lab: Lab) -> tuple[object, SaleRecord]:
        sale = lab.sale(ERIKA, balance_before=900, attempting=True, approved=False)
        return await lab.sender.settle_after_error(sale, 1.0), lab.current(sale)

    answer, now = on(doc, tmp_path, body)
    assert answer == Later("unclear whether booked after a server error")
    assert (now.state, now.approved, now.hold) == (SaleState.PENDING, False, False)


def test_an_error_answer_whose_balance_cannot_be_read_in_time_stays_for_the_outbox(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    # answered after a second: within the client's own limit, past the tap's
    doc.faults.inject(FaultKind.LATENCY, times=1, method="GET", route="wallet", ms=1000)

    async def body(lab: Lab) -> tuple[object, SaleRecord]:
        sale = lab.sale(ERIKA, balance_before=750, attempting=True, approved=False)
        return await lab.sender.settle_after_error(sale, 0.3), lab.current(sale)

    answer, now = on(doc, tmp_path, body)
    assert answer == Later("balance unreadable after a server error")
    assert (now.state, now.approved) == (SaleState.PENDING, False)


# --- what the sender wires together ---------------------------------------------------------------------


def test_the_sender_wires_store_destination_and_loop_with_its_options(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    async def body(lab: Lab) -> None:
        rng = random.Random(3)
        settled: list[None] = []

        def reports(sale: SaleRecord) -> list[tuple[str, list[object]]]:
            return []  # commits nothing with a sale

        told: list[frozenset[str]] = []
        sender = SaleSender(
            lab.journal,
            lab.client,
            lab.health,
            dedupes=True,
            probe_interval_s=0.25,
            clock=lambda: WALL,
            rng=rng,
            on_settled=lambda: settled.append(None),
            reports_for=reports,
            server_error_limit=7,
            product_name=str.upper,
            on_unsellable=told.append,
            monotonic=lambda: 42.0,
        )
        store, destination, loop = sender.store, sender.destination, sender.loop
        assert (store.journal, store.dedupes, store.clock(), store.reports_for, store.on_unsellable) == (
            lab.journal,
            True,
            WALL,
            reports,
            told.append,
        )
        assert (destination.store, destination.client, destination.health, destination.dedupes) == (
            store,
            lab.client,
            lab.health,
            True,
        )
        assert (destination.server_error_limit, destination.product_name("latte")) == (7, "LATTE")
        assert destination.landing.monotonic() == 42.0
        assert (loop.destination, loop.probe_interval_s, loop.clock(), loop.schedule.rng) == (
            destination,
            0.25,
            WALL,
            rng,
        )
        assert loop.schedule.monotonic() == 42.0
        assert loop.probe == destination.probe
        loop.on_settled()  # type: ignore[misc]
        assert settled == [None]
        assert loop.online() is True
        lab.health.mark_down("gone")
        assert loop.online() is False
        # the sender's view is the store's, the destination's and the loop's
        assert (sender.reports_for, sender.on_unsellable) == (reports, told.append)
        sender.reports_for, sender.on_unsellable = None, None
        assert (store.reports_for, store.on_unsellable) == (None, None)
        assert sender.deciding is destination.deciding
        assert sender.in_flight is loop.in_flight
        loop.in_flight.add(MAX)
        assert (sender.busy(MAX), sender.busy(ERIKA)) == (True, False)
        store.mark_unsellable([("latte", "Latte")], "no quota")
        assert sender.unsellable == frozenset({"latte"})

    on(doc, tmp_path, body)


def test_the_sender_delivers_in_its_run_and_probes_through_its_destination(
    doc: WalletEmulator, tmp_path: Path
) -> None:
    async def body(lab: Lab) -> tuple[SaleRecord, int, bool, bool]:
        lab.monotonic = 10_000.0  # long after the sender began: every window is over
        sale = lab.sale(ERIKA)
        stop = asyncio.Event()
        runner = asyncio.ensure_future(lab.sender.run(stop))
        for _ in range(500):
            if lab.current(sale).state is not SaleState.PENDING:
                break
            await asyncio.sleep(0.02)
        stop.set()
        lab.sender.wake()
        await asyncio.wait_for(runner, 10)
        lab.health.mark_down("gone")
        return lab.current(sale), lab.sender.delivered, await lab.sender.probe(), lab.health.online

    sale, delivered, probed, online = on(doc, tmp_path, body)
    assert (sale.state, sale.balance_after, delivered) == (SaleState.DONE, 250, 1)
    assert (probed, online) == (True, True)
