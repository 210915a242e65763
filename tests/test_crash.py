"""Crash tests: ``taptill run`` is SIGKILLed at each step of a sale, restarted, and the server's ledger
must hold exactly one transaction per sale; the journal nothing pending."""

from __future__ import annotations

from pathlib import Path

import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet_server import WalletEmulator
from tests.terminal_lab import MAX, TerminalProcess, journal_lines, settled, wait_for, write_config

pytestmark = pytest.mark.crash


def _restart_and_settle(config: Path, sales: int) -> None:
    term = TerminalProcess(config)
    try:
        wait_for(lambda: settled(config, sales), timeout=20, what="the restarted terminal to settle")
    finally:
        assert term.stop() == 0


def _assert_exactly_once(config: Path, server: WalletEmulator, sales: int) -> None:
    lines = journal_lines(config)
    assert [s["state"] for s in lines] == ["done"] * sales, lines
    keys = [s["idempotency_key"] for s in lines]
    ledger = server.transactions()
    assert sorted(t.idempotency_key or "" for t in ledger) == sorted(keys)
    assert [t.amount for t in ledger] == [-250] * sales
    assert server.balance(MAX) == 2000 - 250 * sales


@pytest.mark.parametrize("point", ["after_journal", "after_answer"])
def test_kill_at_a_crash_point(tmp_path: Path, wallet_server: WalletEmulator, point: str) -> None:
    config = write_config(tmp_path, wallet_server)
    term = TerminalProcess(config, env={"TAPTILL_CRASHPOINT": point})
    term.tap(MAX)
    assert term.wait_dead() == -9, "the crash point did not fire"
    before = journal_lines(config)
    assert [s["state"] for s in before] == ["pending"], "the sale must be journaled before it is sent"
    applied = len(wallet_server.transactions())
    assert applied == (0 if point == "after_journal" else 1)
    _restart_and_settle(config, 1)
    _assert_exactly_once(config, wallet_server, 1)
    assert journal_lines(config)[0]["idempotency_key"] == before[0]["idempotency_key"]


@pytest.mark.parametrize("applied", [True, False], ids=["server-applied", "server-never-applied"])
def test_kill_while_the_request_is_in_flight(
    tmp_path: Path, wallet_server: WalletEmulator, applied: bool
) -> None:
    """Killed after the debit request went out and before its answer came back."""
    config = write_config(tmp_path, wallet_server)
    if applied:
        # The server sits on the request, then books it after the client is gone.
        wallet_server.faults.inject(FaultKind.LATENCY, ms=1500, method="POST", times=1)
    else:
        wallet_server.faults.inject(FaultKind.HANG, method="POST", times=1, cap_s=30)
    term = TerminalProcess(config)
    term.tap(MAX)
    wait_for(
        lambda: wallet_server.stats()["requests_by_route"].get("transaction", 0) >= 1,
        what="the debit to reach the server",
    )
    term.kill()
    if applied:
        wait_for(lambda: len(wallet_server.transactions()) == 1, what="the server to book the debit")
    else:
        wallet_server.faults.clear()  # the hanging request is dropped; nothing was booked
    assert [s["state"] for s in journal_lines(config)] == ["pending"]
    _restart_and_settle(config, 1)
    _assert_exactly_once(config, wallet_server, 1)


def test_kill_during_reconciliation(tmp_path: Path, wallet_server: WalletEmulator) -> None:
    """After an ambiguous answer the restarted terminal dies again mid-recovery; the third run settles it."""
    config = write_config(tmp_path, wallet_server)
    term = TerminalProcess(config, env={"TAPTILL_CRASHPOINT": "after_answer"})
    term.tap(MAX)
    term.wait_dead()
    point = "after_reconcile_read" if wallet_server.flavour == "real" else "after_answer"
    again = TerminalProcess(config, env={"TAPTILL_CRASHPOINT": point}, wait=False)
    assert again.wait_dead(timeout=20) == -9
    _restart_and_settle(config, 1)
    _assert_exactly_once(config, wallet_server, 1)


def test_several_sales_with_kills_between_them(tmp_path: Path, wallet_server: WalletEmulator) -> None:
    config = write_config(tmp_path, wallet_server)
    for n in range(1, 4):
        term = TerminalProcess(config, env={"TAPTILL_CRASHPOINT": "after_answer"})
        term.tap(MAX)
        term.wait_dead()
        _restart_and_settle(config, n)
    _assert_exactly_once(config, wallet_server, 3)


def test_a_late_request_from_a_killed_terminal_is_not_charged_twice(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    """The killed terminal's debit lands only after the restarted one has started: reconciliation must
    wait for it, or a non-deduplicating server would book the resend as a second debit."""
    config = write_config(tmp_path, wallet_server)
    wallet_server.faults.inject(FaultKind.LATENCY, ms=1200, method="POST", times=1)
    term = TerminalProcess(config)
    term.tap(MAX)
    wait_for(
        lambda: wallet_server.stats()["requests_by_route"].get("transaction", 0) >= 1,
        what="the debit to reach the server",
    )
    term.kill()
    assert wallet_server.transactions() == [], "the server must still be sitting on the request"
    _restart_and_settle(config, 1)
    _assert_exactly_once(config, wallet_server, 1)
