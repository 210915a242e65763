"""Table mode end to end: ``taptill run`` against the PAR Brink and wallet emulators (both as slow as real
servers), staff's buttons through ``taptill press``: the wallet's debit is the amount due to the cent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.emulator.brink import parties
from terminal.emulator.brink.server import BrinkEmulator
from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from tests.table_lab import CENTS, GUEST, show_bill, tap, today, write_table_config
from tests.terminal_lab import EMPTY, TerminalProcess, journal_lines, settled, taptill, wait_for


@pytest.fixture
def wallet() -> Iterator[WalletEmulator]:
    with WalletEmulator.demo("doc", latency="real") as emulator:
        emulator.add_wallet(GUEST, 10000)
        yield emulator


@pytest.fixture
def brink() -> Iterator[BrinkEmulator]:
    with BrinkEmulator(business_date=today(), latency="real") as emulator:
        yield emulator


def test_each_bill_is_debited_to_the_cent_with_every_denomination(
    tmp_path: Path, wallet: WalletEmulator, brink: BrinkEmulator
) -> None:
    term = TerminalProcess(write_table_config(tmp_path, wallet, brink))
    try:
        show_bill(term, "ok")  # table 1: 11,11 € = 10 € + 1 € + 10 ct + 1 ct
        assert tap(term) == "approved 11,11 €: table 1 paid, balance 88,89 €; close the table at the POS"
        show_bill(term, "next", "next", "ok")  # table 3: three orders, 40,79 €
        assert tap(term).startswith("approved 40,79 €: table 3 paid, balance 48,10 €")
        show_bill(term, "prev", "ok")  # table 2: 23,89 €
        assert tap(term).startswith("approved 23,89 €: table 2 paid")
        status = taptill("status", "--config", str(term.config)).stdout
    finally:
        assert term.stop() == 0
    debits = wallet.transactions()
    assert [-t.amount for t in debits] == [1111, 4079, 2389]
    for t in debits:
        assert sum(CENTS[str(p)] for p in t.products) == -t.amount
    assert sorted(map(str, debits[0].products)) == ["ct1", "ct10", "eur1", "eur10"]
    assert len(debits[1].products) == 4 + 0 + 7 + 9  # 4x10 €, 7x10 ct, 9x1 ct
    assert wallet.balance(GUEST) == 10000 - 1111 - 4079 - 2389
    # the sales' keys are the bills' keys, and the journal says which table each paid
    sales = journal_lines(term.config)
    assert [s["idempotency_key"] for s in sales] == [t.idempotency_key for t in debits]
    assert all(s["idempotency_key"].startswith("b") for s in sales)
    for table, amount in (("1", "11,11"), ("3", "40,79"), ("2", "23,89")):
        assert f"table    {table}     {amount} €" in status, status
    assert "paid: close it at the POS" in status


def test_a_bill_that_changed_after_it_was_shown_is_shown_anew_and_not_charged(
    tmp_path: Path, wallet: WalletEmulator, brink: BrinkEmulator
) -> None:
    term = TerminalProcess(write_table_config(tmp_path, wallet, brink))
    try:
        show_bill(term, "next", "ok")  # table 2: 23,89 €
        party = brink.location.party(today(), 2)
        assert party is not None
        brink.location.add_entry(party.orders[0].id, parties.Entry(9, "Dessert", "4.50", item_id=499))
        line = tap(term)
        assert line == "declined: table 2's bill changed to 28,39 €; nothing charged, tap again"
        assert wallet.transactions() == []
        assert tap(term).startswith("approved 28,39 €: table 2 paid")
        # the same bill again (staff have not closed it at the POS): not charged twice
        show_bill(term, "ok", shows="Bill already paid")
        assert tap(term) == "declined: table 2's bill is already paid; nothing charged"
    finally:
        assert term.stop() == 0
    assert [-t.amount for t in wallet.transactions()] == [2839]


def test_the_pos_and_the_wallet_refusing_charge_nothing(
    tmp_path: Path, wallet: WalletEmulator, brink: BrinkEmulator
) -> None:
    term = TerminalProcess(write_table_config(tmp_path, wallet, brink))
    try:
        show_bill(term, "ok")
        assert tap(term, EMPTY).startswith("declined: insufficient balance (needs 11,11 €")
        brink.force("GetParty", 3)
        assert tap(term) == "declined: table 1: till busy: try again later"
        brink.force("GetParty", 4)
        assert tap(term) == "declined: table 1: till refuses the terminal: ask staff"
        wallet.faults.set_down(True)
        show_bill(term, "ok", "ok")  # back to choosing, and the bill read again
        assert tap(term) == "declined offline: this sale is never made without the wallet server's word"
    finally:
        assert term.stop() == 0
    assert wallet.transactions() == []


def test_a_denomination_at_another_wallet_price_puts_the_terminal_out_of_service(
    tmp_path: Path, brink: BrinkEmulator
) -> None:
    from terminal.emulator.wallet.flavours import DEMO_PRODUCTS_DOC
    from terminal.ops.doctor import diagnose

    products = [(pid, name, 110 if pid == "eur1" else price) for pid, name, price in DEMO_PRODUCTS_DOC]
    with WalletEmulator.demo("doc", products=products) as wallet:
        wallet.add_wallet(GUEST, 10000)
        term = TerminalProcess(write_table_config(tmp_path, wallet, brink))
        try:
            assert tap(term) == "declined: out of service (Please ask staff)"
            status = taptill("status", "--config", str(term.config)).stdout
        finally:
            assert term.stop() == 0
        assert wallet.transactions() == []
    fix = "fix the wallet product's price or [table] denominations"
    assert "wallet product 'eur1'" in term.log() and fix in term.log()
    assert "OUT OF SERVICE:  [table] denomination 100 cents: wallet product 'eur1'" in status, status
    checks = {c.name: c for c in diagnose(term.config)}
    assert checks["tables"].status == "FAIL" and fix in checks["tables"].detail


def test_a_table_payment_waits_for_the_wallets_word_and_is_never_shown_paid_on_a_guess(
    tmp_path: Path, brink: BrinkEmulator
) -> None:
    """The field's "Paid · Booked shortly": a debit answered after the tap budget (800 ms) was shown
    paid on a guess, said to be "queued behind an earlier sale" though the card had none (the line
    named both causes of an unconfirmed sale; this one was the tap budget running out on the answer).
    A table payment waits for the answer up to the wallet client's deadline; without one it says "being
    confirmed" (status: being confirmed) and is settled by looking, never sent again; while it is on its
    way the card's next bill is declined before anything is journaled."""
    with WalletEmulator.demo("doc") as wallet:
        wallet.add_wallet(GUEST, 10000)
        # the client's deadline long enough that the lost answer's sale is still on its way (it is looked
        # for only after that deadline) while staff choose the next table on a loaded machine
        config = write_table_config(tmp_path, wallet, brink, budget_ms=800, timeout_s=12.0)
        term = TerminalProcess(config)
        try:
            # answered after the tap budget, within the client's deadline: the wallet's word, shown paid
            wallet.faults.inject(FaultKind.LATENCY, ms=1500, times=1, method="POST", route="transaction")
            show_bill(term, "ok")  # table 1: 11,11 €
            line = tap(term)
            assert line == "approved 11,11 €: table 1 paid, balance 88,89 €; close the table at the POS", line
            # booked, but the answer is lost: not "Paid"; the sale is looked for after the client's deadline
            wallet.faults.inject(FaultKind.DROP_AFTER, times=1, method="POST", route="transaction")
            show_bill(term, "next", "ok")  # table 2: 23,89 €
            line = tap(term)
            assert line.startswith("pending: table 2's payment of 23,89 € is being confirmed"), line
            status = taptill("status", "--config", str(config)).stdout
            assert "table    2     23,89 €" in status and "being confirmed by the wallet" in status, status
            # that sale still on its way: the next bill is declined before anything is journaled
            show_bill(term, "next", "ok")  # table 3
            line = tap(term)
            assert line == "declined: earlier payment still being confirmed, try again in a moment", line
            wait_for(lambda: settled(config, 2), timeout=60, what="the unanswered sale settled")
            status = taptill("status", "--config", str(config)).stdout
        finally:
            assert term.stop() == 0
    sales = [s for s in journal_lines(config) if s["state"] != "declined"]
    # the dropped answer's sale was booked: found by the balance, done, never sent again
    assert [(s["amount_cents"], s["state"]) for s in sales] == [(-1111, "done"), (-2389, "done")]
    assert [-t.amount for t in wallet.transactions()] == [1111, 2389]
    assert "paid (not shown paid here" in status and "to refund:       0 (" in status, status


def test_an_order_paid_more_than_it_owes_is_warned_of_in_the_log_and_status(
    tmp_path: Path, wallet: WalletEmulator, brink: BrinkEmulator
) -> None:
    brink.location.add_payment(70301, parties.Payment(9, "20.00", 1, today()))  # owes 17.70
    term = TerminalProcess(write_table_config(tmp_path, wallet, brink))
    try:
        show_bill(term, "next", "next", "ok", shows="23,09")  # table 3 less order 2301, counted as 0
        status = taptill("status", "--config", str(term.config)).stdout
        log = term.log()
    finally:
        assert term.stop() == 0
    said = "table 3: order 2301: -2.30 due (more paid than owed); counted as 0"
    assert f"WARNING:         {said} (as last read from the POS; fix the order there)" in status, status
    assert "table 3 on" in log and "order 2301: -2.30 due (more paid than owed)" in log, log
    assert log.count("-2.30 due") == 1, "warned of once, not at every read"
