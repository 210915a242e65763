"""The event loop never freezes: no background loop goes round without awaiting, and stalls are seen.

The field fault: with answers as slow as a real server's, the outbox's idle look landed while a tap's
debit was in flight, found nothing it could send, and went round again without awaiting, so the loop
never read the debit's answer: the guest was charged, the screen stayed on "Keep card on reader".
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal
from terminal.service.loop_lag import LoopLagMonitor
from terminal.service.secret import Secret
from terminal.wallet.client import WalletClient
from terminal.wallet.health import ServerHealth
from terminal.wallet.sale_sender import SaleSender
from tests.terminal_lab import MAX, TerminalProcess, journal_lines, settled, taptill, wait_for, write_config

# A background loop that waits as it should burns a few per cent of a core at most; one that goes round
# without awaiting takes all the CPU it can get (at least half a core even on a loaded 2-core machine).
BUSY_SHARE = 0.25


def _cpu_share(make: Callable[[asyncio.Event], Coroutine[Any, Any, None]], seconds: float) -> float:
    """Run ``make(stop)`` on its own thread and event loop for ``seconds``; the CPU share that thread used.

    Its own thread, because a task that never awaits also starves the timer that would stop it.
    """
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        task = loop.create_task(make(stop))
        started.set()
        loop.run_until_complete(task)

    thread = threading.Thread(target=main, name="loop-under-test", daemon=True)
    thread.start()
    started.wait(5.0)
    assert thread.ident is not None
    clock = time.pthread_getcpuclockid(thread.ident)
    cpu0, wall0 = time.clock_gettime(clock), time.monotonic()
    time.sleep(seconds)
    share = (time.clock_gettime(clock) - cpu0) / (time.monotonic() - wall0)
    loop.call_soon_threadsafe(stop.set)
    thread.join(10.0)
    assert not thread.is_alive(), f"the loop did not stop when asked (it used {share:.0%} of a core)"
    loop.close()
    return share


def _sender(tmp_path: Path, emulator: WalletEmulator, dedupes: bool) -> tuple[Journal, SaleSender]:
    journal = Journal.open(tmp_path / "journal.sqlite3")
    client = WalletClient(emulator.base_url, Secret(emulator.api_token), timeout_s=2.0)
    sender = SaleSender(journal, client, ServerHealth(), dedupes=dedupes, rng=random.Random(1))
    return journal, sender


def test_the_outbox_waits_while_the_only_pending_sale_is_in_flight(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    """The exact field state: one pending sale, its card's debit in flight on the tap path."""
    journal, sender = _sender(tmp_path, wallet_server, dedupes=wallet_server.flavour == "doc")
    journal.record_sale(
        token_id=MAX,
        products=["x"],
        amount_cents=-250,
        description="Kaffee",
        tag=None,
        offline=False,
        attempting=True,
        balance_before=2000,
    )
    sender.in_flight.add(MAX)  # the tap path's request is under way
    share = _cpu_share(sender.run, 2.5)  # the journal stays open: a stuck loop thread may still use it
    journal.close()
    assert share < BUSY_SHARE, f"the outbox loop used {share:.0%} of a core while it had nothing to send"


def test_the_outbox_waits_while_a_sale_waits_for_its_reconcile_window(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    journal, sender = _sender(tmp_path, wallet_server, dedupes=False)
    journal.record_sale(
        token_id=MAX,
        products=["x"],
        amount_cents=-250,
        description="Kaffee",
        tag=None,
        offline=False,
        attempting=True,
        balance_before=2000,
    )
    share = _cpu_share(sender.run, 2.5)
    journal.close()
    assert share < BUSY_SHARE, f"the outbox loop used {share:.0%} of a core while waiting to reconcile"


def test_a_slow_debit_never_freezes_the_terminal(tmp_path: Path, wallet_server: WalletEmulator) -> None:
    """Every debit takes 2.5 s, longer than the tap budget and than the outbox's idle look: the tap is
    decided within its budget, the relay fires, the next tap is served, and SIGTERM is obeyed."""
    wallet_server.faults.inject(FaultKind.LATENCY, ms=2500, method="POST", route="transaction")
    config = write_config(tmp_path, wallet_server, display="console", timeout_s=10.0)
    term = TerminalProcess(config)
    try:
        term.tap(MAX)
        wait_for(lambda: "Approved" in term.log(), timeout=10, what="the first tap's decision screen")
        wait_for(lambda: "relay: 1 pulse(s)" in term.log(), timeout=5, what="the relay")
        wait_for(lambda: settled(config, 1), timeout=15, what="the slow debit to be booked")
        term.tap(MAX)
        wait_for(lambda: term.log().count("relay: 1 pulse(s)") == 2, timeout=10, what="the second tap")
        wait_for(lambda: settled(config, 2), timeout=15, what="the second debit to be booked")
    finally:
        code = term.stop(timeout=15)
    assert code == 0
    assert [s["state"] for s in journal_lines(config)] == ["done", "done"]
    assert [t.amount for t in wallet_server.transactions()] == [-250, -250]
    assert "event loop blocked" not in term.log(), term.log()


def test_a_blocked_loop_is_logged_naming_what_ran_and_counted_in_status(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    config = write_config(tmp_path, wallet_server)
    term = TerminalProcess(config, env={"TAPTILL_TEST_STALL": "1"})  # the test switch for the stall verb
    try:
        assert term.send("stall 0.6") == "ok"  # blocks the device loop itself, as a bad callback would
        wait_for(lambda: "event loop blocked" in term.log(), timeout=10, what="the lag warning")
        term.tap(MAX)
        wait_for(lambda: settled(config, 1), what="a tap after the stall")
    finally:
        assert term.stop() == 0
    warning = next(line for line in term.log().splitlines() if "event loop blocked" in line)
    assert "device_loop.py" in warning and "_hold_loop" in warning, warning
    status = taptill("status", "--config", str(config)).stdout
    assert "event loop:      1 stall(s) over 250 ms" in status, status


def test_the_lag_monitor_measures_lateness_and_names_the_blocking_code() -> None:
    monitor = LoopLagMonitor(tick_s=0.05)

    def hog() -> None:
        time.sleep(0.4)  # a callback that blocks the loop

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.ensure_future(monitor.run(stop))
        await asyncio.sleep(0.3)
        asyncio.get_running_loop().call_soon(hog)
        await asyncio.sleep(0.5)
        stop.set()
        await task

    asyncio.run(main())
    stats = monitor.stats
    assert stats.stalls == 1
    assert stats.max_ms >= 300
    assert stats.last_culprit is not None and "hog" in stats.last_culprit
    summary = monitor.summary_ms()
    assert summary["max"] >= 300 and summary["p50"] < 300


def test_on_uvloop_a_blocking_c_callback_is_named_as_such() -> None:
    """`taptill run` runs on uvloop, whose handles are C code: time.sleep called by the loop itself
    leaves only the runner's frame, which must not be taken for the culprit."""
    import uvloop

    monitor = LoopLagMonitor(tick_s=0.05)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.ensure_future(monitor.run(stop))
        await asyncio.sleep(0.3)
        asyncio.get_running_loop().call_soon(time.sleep, 0.4)
        await asyncio.sleep(0.5)
        stop.set()
        await task

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    assert monitor.stats.stalls == 1
    said = monitor.stats.last_culprit
    assert said is not None and said.startswith("a callback with no Python frame"), said
