"""Crash tests: ``taptill run`` is SIGKILLed at each step of a sale, restarted, and the server's ledger
must hold exactly one transaction per booked sale; the journal nothing pending.

A sale the guest was told was approved is delivered whatever it takes. A sale killed before its tap was
decided (the guest saw only "Processing") is never sent again: it is done if its request was booked
(listed by ``taptill queue`` as charged but never approved, for a refund), else rejected.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import MAX, TerminalProcess, journal_lines, settled, taptill, wait_for, write_config

pytestmark = pytest.mark.crash


def _restart_and_settle(config: Path, sales: int) -> None:
    term = TerminalProcess(config)
    try:
        wait_for(lambda: settled(config, sales), timeout=20, what="the restarted terminal to settle")
    finally:
        assert term.stop() == 0


def _assert_exactly_once(config: Path, server: WalletEmulator, states: list[str]) -> None:
    """The journal's sales end in ``states``; the ledger holds each done sale's key once, nothing else."""
    lines = journal_lines(config)
    assert [s["state"] for s in lines] == states, lines
    done = [s["idempotency_key"] for s in lines if s["state"] == "done"]
    ledger = server.transactions()
    assert sorted(t.idempotency_key or "" for t in ledger) == sorted(done)
    assert [t.amount for t in ledger] == [-250] * len(done)
    assert server.balance(MAX) == 2000 - 250 * len(done)


@pytest.mark.parametrize("point", ["after_journal", "after_answer"])
def test_kill_at_a_crash_point(tmp_path: Path, wallet_server: WalletEmulator, point: str) -> None:
    config = write_config(tmp_path, wallet_server)
    term = TerminalProcess(config, env={"TAPTILL_CRASHPOINT": point})
    term.tap(MAX)
    assert term.wait_dead() == -9, "the crash point did not fire"
    before = journal_lines(config)
    assert [s["state"] for s in before] == ["pending"], "the sale must be journaled before it is sent"
    assert before[0]["approved"] is False, "killed before the tap was decided"
    applied = len(wallet_server.transactions())
    assert applied == (0 if point == "after_journal" else 1)
    _restart_and_settle(config, 1)
    # Never approved: not sent again. Booked before the kill: done, and listed for a refund.
    _assert_exactly_once(config, wallet_server, ["rejected" if point == "after_journal" else "done"])
    after = journal_lines(config)[0]
    assert after["idempotency_key"] == before[0]["idempotency_key"]
    queue = taptill("queue", "--config", str(config)).stdout
    assert ("CHARGED, NEVER APPROVED" in queue) == (point == "after_answer"), queue


def test_an_approved_sale_is_delivered_after_a_kill(tmp_path: Path, wallet_server: WalletEmulator) -> None:
    """The server sits on the debit past the tap budget: the guest is served (approved, unconfirmed),
    then the terminal dies before the answer. The restarted terminal must deliver it, once."""
    config = write_config(tmp_path, wallet_server)
    wallet_server.faults.inject(FaultKind.HANG, method="POST", times=1, cap_s=30)
    term = TerminalProcess(config)
    term.tap(MAX)
    wait_for(lambda: journal_lines(config)[0]["approved"] is True, what="the tap to be approved")
    term.kill()
    wallet_server.faults.clear()  # the hanging request is dropped; nothing was booked
    _restart_and_settle(config, 1)
    _assert_exactly_once(config, wallet_server, ["done"])
    assert journal_lines(config)[0]["approved"] is True


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
    key = journal_lines(config)[0]["idempotency_key"]
    term = TerminalProcess(config)
    try:
        wait_for(lambda: settled(config, 1), timeout=20, what="the restarted terminal to settle")
        # Killed before the tap was decided: booked means done (for a refund), not booked is never re-sent.
        _assert_exactly_once(config, wallet_server, ["done" if applied else "rejected"])
        queue = taptill("queue", "--config", str(config)).stdout
        assert ("to refund: 1 (2,50 €)" in queue) == applied, queue
        assert "waiting before reconciling" not in queue, queue
        if applied:  # the operator refunds the guest in pretix and closes it while the terminal runs
            assert f"key {key}  the terminal stopped before telling the guest" in queue, queue
            taptill("settle", key, "--refunded", "--config", str(config))
            queue = taptill("queue", "--config", str(config)).stdout
            assert queue == "queue empty: every sale is confirmed and served\n", queue
    finally:
        assert term.stop() == 0
    (sale,) = journal_lines(config)
    # the retry note ("waiting before reconciling") is gone; a rejection keeps its reason
    assert (sale["reason"] == "") if applied else sale["reason"].startswith("server_trouble"), sale
    assert (sale["resolved"] or {}).get("how") == ("refunded" if applied else None), sale


def test_kill_during_reconciliation(tmp_path: Path, wallet_server: WalletEmulator) -> None:
    """After an ambiguous answer the restarted terminal dies again mid-recovery; the third run settles it."""
    config = write_config(tmp_path, wallet_server)
    term = TerminalProcess(config, env={"TAPTILL_CRASHPOINT": "after_answer"})
    term.tap(MAX)
    term.wait_dead()
    point = "after_reconcile_read"  # never approved: reconciled by balance on either server, not re-sent
    again = TerminalProcess(config, env={"TAPTILL_CRASHPOINT": point}, wait=False)
    assert again.wait_dead(timeout=20) == -9
    _restart_and_settle(config, 1)
    _assert_exactly_once(config, wallet_server, ["done"])


def test_several_sales_with_kills_between_them(tmp_path: Path, wallet_server: WalletEmulator) -> None:
    config = write_config(tmp_path, wallet_server)
    for n in range(1, 4):
        term = TerminalProcess(config, env={"TAPTILL_CRASHPOINT": "after_answer"})
        term.tap(MAX)
        term.wait_dead()
        _restart_and_settle(config, n)
    _assert_exactly_once(config, wallet_server, ["done"] * 3)


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
    _assert_exactly_once(config, wallet_server, ["done"])
