"""Clock steps: a Raspberry Pi has no real-time clock, so fake-hwclock and NTP step its wall clock by
hours or days. Waits, backoff and the reconcile window must not follow it; a card's last balance must
not age by a day when the clock jumps forward; a retry noted "a day ahead" must not park a sale.

In process with an injected wall clock, and end to end with libfaketime (Debian ``faketime``) stepping
the wall clock of a real ``taptill run`` by a day each way while its monotonic clocks run on.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal
from terminal.model import SaleState
from terminal.service.secret import Secret
from terminal.wallet.client import WalletClient
from terminal.wallet.health import ServerHealth
from terminal.wallet.sale_sender import Later, SaleSender
from tests.terminal_lab import (
    MAX,
    TerminalProcess,
    espresso,
    faketime_env,
    journal_lines,
    settled,
    wait_for,
    write_config,
)

DAY_S = 86_400.0


class WallClock:
    """A wall clock a test can step; it runs on with real time between steps."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _sender(journal: Journal, server: WalletEmulator, wall: WallClock, timeout_s: float) -> SaleSender:
    client = WalletClient(server.base_url, Secret(server.api_token), timeout_s=timeout_s)
    return SaleSender(
        journal, client, ServerHealth(), dedupes=False, clock=wall, rng=random.Random(3), probe_interval_s=0.1
    )


async def _run_until(sender: SaleSender, done: object, timeout: float) -> float:
    """Run the outbox until ``done()``; seconds it took."""
    stop = asyncio.Event()
    task = asyncio.ensure_future(sender.run(stop))
    started = time.monotonic()
    try:
        while not done():  # type: ignore[operator]
            assert time.monotonic() - started < timeout, "the outbox did not settle the sale"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        sender.wake()
        await asyncio.wait_for(task, 10)
    return time.monotonic() - started


@pytest.mark.parametrize("step", [DAY_S, -DAY_S], ids=["forward", "backward"])
def test_a_stepped_clock_never_shortens_the_reconcile_window(tmp_path: Path, step: float) -> None:
    """The debit's answer is lost while the server still holds the request; the wall clock then jumps.
    Reconciling before the request can no longer land would read the old balance, call the debit not
    booked, and send it again: a double charge on a server that does not deduplicate."""
    with WalletEmulator.demo("real", latency="real") as server:
        # The server books the debit after 0.85-1.1 s: after the client gave up (0.5 s), inside the
        # reconcile window (timeout + 1 s), as a slow server does.
        server.faults.inject(FaultKind.LATENCY, ms=700, method="POST", times=1)
        journal = Journal.open(tmp_path / "journal.sqlite3")
        wall = WallClock()

        async def scenario() -> None:
            sender = _sender(journal, server, wall, timeout_s=0.5)
            sale = journal.record_sale(
                token_id=MAX,
                products=[espresso("real")],
                amount_cents=-250,
                description="Kaffee",
                tag=None,
                offline=False,
                balance_before=2000,
                attempting=True,
            )
            first = await sender.attempt(sale, fresh_balance=2000)
            assert isinstance(first, Later)  # the answer did not come within the client's 0.5 s
            wall.offset += step
            current = journal.sale(sale.id)
            assert current is not None
            again = await sender.attempt(current)
            assert isinstance(again, Later) and again.detail == "waiting before reconciling", again
            await _run_until(sender, lambda: journal.sale(sale.id).state is SaleState.DONE, 20)  # type: ignore[union-attr]
            await sender.client.aclose()

        asyncio.run(scenario())
        journal.close()
        assert [t.amount for t in server.transactions()] == [-250], "booked twice or not at all"


def test_a_backward_step_does_not_park_a_retry_for_a_day(tmp_path: Path) -> None:
    with WalletEmulator.demo("real", latency="real") as server:
        journal = Journal.open(tmp_path / "journal.sqlite3")
        wall = WallClock()

        async def scenario() -> float:
            sender = _sender(journal, server, wall, timeout_s=1.0)
            server.faults.set_down(True)
            sale = journal.record_sale(
                token_id=MAX,
                products=[espresso("real")],
                amount_cents=-250,
                description="Kaffee",
                tag=None,
                offline=True,
            )
            for _ in range(3):  # a few failed attempts: the backoff grows
                assert isinstance(await sender.attempt(journal.sale(sale.id)), Later)  # type: ignore[arg-type]
            noted = journal.sale(sale.id)
            assert noted is not None and noted.next_attempt_at > wall()
            wall.offset -= DAY_S  # NTP steps the clock back: the noted retry now lies a day ahead
            server.faults.set_down(False)
            took = await _run_until(sender, lambda: journal.sale(sale.id).state is SaleState.DONE, 30)  # type: ignore[union-attr]
            await sender.client.aclose()
            return took

        took = asyncio.run(scenario())
        journal.close()
        assert [t.amount for t in server.transactions()] == [-250]
    assert took < 20.0, f"the sale waited {took:.0f} s after the server came back"


def test_a_forward_step_does_not_age_a_cards_balance(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.sqlite3")
    from terminal.service import boot_clock

    seen = boot_clock.now()
    journal.remember_card(MAX, 2000, seen)
    later = boot_clock.now(seen.wall + DAY_S)  # the wall clock jumped a day; the boot-time clock did not
    view = journal.offline_view(MAX, later)
    assert view.balance_age_s is not None and view.balance_age_s < 5.0, view
    other_boot = boot_clock.Moment(seen.wall + 600.0, "another-boot", 3.0)  # after a reboot: wall clock
    assert journal.offline_view(MAX, other_boot).balance_age_s == pytest.approx(600.0, abs=1.0)
    before = boot_clock.Moment(seen.wall - DAY_S, "another-boot", 3.0)  # a wall time in the past: age 0
    assert journal.offline_view(MAX, before).balance_age_s == 0.0
    journal.close()


# --- end to end with libfaketime ------------------------------------------------------------------


class SteppedTerminal:
    """``taptill run`` whose wall clock libfaketime steps (monotonic and boot-time clocks untouched)."""

    def __init__(self, config: Path) -> None:
        self.offset_file = config.parent / "faketime"
        self.term = TerminalProcess(config, env=faketime_env(self.offset_file))

    def step(self, days: int) -> None:
        self.offset_file.write_text(f"{days:+d}d\n")


def test_end_to_end_a_forward_step_keeps_offline_sales_going(tmp_path: Path) -> None:
    with WalletEmulator.demo("real", latency="real") as server:
        config = write_config(tmp_path, server)
        stepped = SteppedTerminal(config)
        term = stepped.term
        try:
            term.tap(MAX)  # seen online: its balance is known
            wait_for(lambda: settled(config, 1), what="the online sale")
            server.faults.set_down(True)
            stepped.step(+1)  # NTP finally sets the clock: a day later than fake-hwclock said
            term.tap(MAX)
            wait_for(lambda: len(journal_lines(config)) == 2, what="the offline tap")
            offline = journal_lines(config)[1]
            assert offline["state"] == "pending" and offline["offline"] is True, offline
            server.faults.set_down(False)
            wait_for(lambda: settled(config, 2), timeout=30, what="the offline sale to be delivered")
        finally:
            assert term.stop() == 0
        assert [t.amount for t in server.transactions()] == [-250, -250]


def test_end_to_end_a_backward_step_does_not_park_pending_sales(tmp_path: Path) -> None:
    with WalletEmulator.demo("real", latency="real") as server:
        config = write_config(tmp_path, server)
        stepped = SteppedTerminal(config)
        term = stepped.term
        try:
            term.tap(MAX)
            wait_for(lambda: settled(config, 1), what="the online sale")
            server.faults.set_down(True)
            term.tap(MAX)
            wait_for(lambda: len(journal_lines(config)) == 2, what="the offline tap")
            time.sleep(1.5)  # a few failed probes and retries, noted on the wall clock
            stepped.step(-1)
            term.tap(MAX)  # a later sale of the same card queues behind the first
            wait_for(lambda: len(journal_lines(config)) == 3, what="the second offline tap")
            server.faults.set_down(False)
            started = time.monotonic()
            wait_for(lambda: settled(config, 3), timeout=30, what="the pending sales to be delivered")
            took = time.monotonic() - started
        finally:
            assert term.stop() == 0
        assert [t.amount for t in server.transactions()] == [-250, -250, -250]
        assert took < 20.0, f"pending sales waited {took:.0f} s after the server came back"
