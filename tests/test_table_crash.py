"""Table mode's crash tests: ``taptill run`` SIGKILLed while paying a table's bill (after journaling the sale,
after the wallet's debit), restarted, the guest taps again: the wallet is debited exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.emulator.brink.server import BrinkEmulator
from terminal.emulator.wallet import WalletEmulator
from tests.table_lab import GUEST, show_bill, tap, today, write_table_config
from tests.terminal_lab import TerminalProcess, journal_lines, settled, taptill, wait_for

pytestmark = pytest.mark.crash


@pytest.fixture
def wallet() -> Iterator[WalletEmulator]:
    with WalletEmulator.demo("doc", latency="real") as emulator:
        emulator.add_wallet(GUEST, 10000)
        yield emulator


@pytest.fixture
def brink() -> Iterator[BrinkEmulator]:
    with BrinkEmulator(business_date=today()) as emulator:
        yield emulator


@pytest.mark.parametrize("point", ["after_journal", "after_answer"])
def test_killed_while_paying_a_table_the_wallet_is_debited_once(
    tmp_path: Path, wallet: WalletEmulator, brink: BrinkEmulator, point: str
) -> None:
    config = write_table_config(tmp_path, wallet, brink)
    term = TerminalProcess(config, env={"TAPTILL_CRASHPOINT": point})
    show_bill(term, "ok")  # table 1: 11,11 €
    term.tap(GUEST)
    assert term.wait_dead() == -9, "the crash point did not fire"
    (sale,) = journal_lines(config)
    assert sale["state"] == "pending" and sale["approved"] is False and sale["amount_cents"] == -1111
    key = sale["idempotency_key"]
    assert len(wallet.transactions()) == (1 if point == "after_answer" else 0)

    term = TerminalProcess(config)
    try:
        # the sale the guest never saw decided is settled, never sent again: booked -> done, else rejected
        wait_for(lambda: settled(config, 1), timeout=20, what="the restarted terminal to settle")
        show_bill(term, "ok", shows="Bill already paid" if point == "after_answer" else "Tap card to pay")
        line = tap(term)
        status = taptill("status", "--config", str(config)).stdout
    finally:
        assert term.stop() == 0
    ledger = wallet.transactions()
    assert [-t.amount for t in ledger] == [1111], "debited exactly once"
    sales = journal_lines(config)
    if point == "after_answer":
        # booked before the kill: the bill is paid; the guest tapping again is not charged again
        assert line == "declined: table 1's bill is already paid; nothing charged"
        assert [s["state"] for s in sales] == ["done"] and ledger[0].idempotency_key == key
        assert (
            "paid (not shown paid here: the terminal stopped or had no answer in time): close it at the POS"
            in status
        ), status
        assert "to refund:       0" in status, status
    else:
        # nothing booked: the next tap pays the same bill under the retry key
        assert line.startswith("approved 11,11 €: table 1 paid")
        assert [s["state"] for s in sales] == ["rejected", "done"]
        assert ledger[0].idempotency_key == f"{key}-2" == sales[1]["idempotency_key"]
        assert "paid: close it at the POS" in status, status


def test_a_bill_booked_under_its_key_elsewhere_is_not_charged_again_here(
    tmp_path: Path, wallet: WalletEmulator, brink: BrinkEmulator
) -> None:
    """Two terminals, two journals, the same table: the second terminal's debit under the bill's key is
    answered 202 by the deduplicating wallet: "already paid", journaled as booked elsewhere."""
    first = TerminalProcess(write_table_config(tmp_path / "a", wallet, brink))
    second = TerminalProcess(write_table_config(tmp_path / "b", wallet, brink))
    try:
        show_bill(first, "ok")
        show_bill(second, "ok")
        assert tap(first).startswith("approved 11,11 €: table 1 paid")
        assert tap(second) == "declined: table 1's bill is already paid; nothing charged"
        status = taptill("status", "--config", str(second.config)).stdout
    finally:
        assert first.stop() == 0
        assert second.stop() == 0
    assert [-t.amount for t in wallet.transactions()] == [1111]
    (sale,) = journal_lines(second.config)
    assert sale["state"] == "done" and sale["reason"].startswith("booked elsewhere: ")
    assert "sales booked:    0" in status and "booked elsewhere: 1" in status, status
    assert "paid at another terminal" in status, status
