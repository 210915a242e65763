"""Crash tests of a table payment told to the POS (``[table] apply_payment``): ``taptill run`` SIGKILLed after
the wallet's debit, after the ApplyPayment record was journaled as maybe sent, after ApplyPayment was sent;
restarted: the wallet is debited once, each order's payment applied once, nothing lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.brink.bill import payment_key
from terminal.emulator.brink.server import BrinkEmulator
from terminal.emulator.wallet import WalletEmulator
from terminal.emulator.wallet.flavours import ProductSpec
from tests.table_lab import GUEST, show_bill, tap, today, write_table_config
from tests.terminal_lab import TerminalProcess, journal_lines, settled, taptill, wait_for

pytestmark = pytest.mark.crash

TABLES = "table_range = [1, 13]\napply_payment = true\ntender_id = 7"


@pytest.fixture
def wallet() -> Iterator[WalletEmulator]:
    with WalletEmulator.demo("doc", latency="real") as emulator:
        emulator.add_wallet(GUEST, 10000)
        yield emulator


@pytest.fixture
def brink() -> Iterator[BrinkEmulator]:
    with BrinkEmulator(business_date=today(), latency="real") as emulator:
        yield emulator


@pytest.mark.parametrize(
    "point, sent_before",
    [
        ("after_answer", 0),  # the wallet debited; the sale not yet journaled done (no record yet)
        ("brink.outbox_after_begin", 0),  # the record journaled as maybe sent; ApplyPayment not sent
        ("brink.outbox_after_attempt", 1),  # ApplyPayment sent and applied; its answer not journaled
    ],
)
def test_killed_while_telling_the_pos_each_payment_lands_once(
    tmp_path: Path, wallet: WalletEmulator, brink: BrinkEmulator, point: str, sent_before: int
) -> None:
    config = write_table_config(tmp_path, wallet, brink, tables=TABLES)
    term = TerminalProcess(config, env={"TAPTILL_CRASHPOINT": point})
    show_bill(term, "next", "next", "ok")  # table 3: three orders, 40,79 €
    term.tap(GUEST)
    assert term.wait_dead() == -9, "the crash point did not fire"
    assert len(wallet.transactions()) == 1
    assert len(brink.applied_payments()) == sent_before

    term = TerminalProcess(config)
    try:
        wait_for(lambda: settled(config, 1), timeout=20, what="the restarted terminal to settle the sale")
        wait_for(lambda: len(brink.applied_payments()) == 3, timeout=30, what="the three payments applied")
        wait_for(lambda: "3 payment(s) applied, 0 waiting" in status(config), timeout=20, what="status")
        text = status(config)
        queue = taptill("queue", "--config", str(config)).stdout
        log = term.log()
    finally:
        assert term.stop() == 0
    assert [-t.amount for t in wallet.transactions()] == [4079], "debited exactly once"
    (sale,) = journal_lines(config)
    key = sale["idempotency_key"]
    applied = sorted(
        (p["order_id"], p["amount"], p["reference"]["taptill_key"]) for p in brink.applied_payments()
    )
    assert applied == [
        (70301, "17.70", payment_key(key, "bar1", 70301)),
        (70302, "11.05", payment_key(key, "bar1", 70302)),
        (70303, "12.04", payment_key(key, "bar1", 70303)),
    ], "each order paid once, under its record's key"
    assert "0 held for staff" in text, text
    # a table sale hands nothing over: booked, the bill is paid, even if "Paid" never showed; nobody is
    # told to refund it (that would lose the bill the POS shows paid)
    assert "0 to refund" in text and "to refund:       0 (" in text, text
    assert "queue empty" in queue, queue
    assert "refund it" not in log, log
    if point == "after_answer":
        assert (
            "paid (not shown paid here: the terminal stopped or had no answer in time), applied at the POS"
            in text
        ), text
    else:
        assert "paid, applied at the POS" in text, text


def status(config: Path) -> str:
    return taptill("status", "--config", str(config)).stdout


def test_two_terminals_paying_one_bill_tell_the_pos_once(
    tmp_path: Path, wallet: WalletEmulator, brink: BrinkEmulator
) -> None:
    """The second terminal's debit is answered 202 (booked by the first): its payment records end unsent;
    the first terminal's are applied."""
    first = TerminalProcess(write_table_config(tmp_path / "a", wallet, brink, tables=TABLES))
    second = TerminalProcess(
        write_table_config(tmp_path / "b", wallet, brink, tables=TABLES, terminal_id="bar2")
    )
    try:
        show_bill(first, "ok")
        show_bill(second, "ok")
        assert tap(first).startswith("approved 11,11 €: table 1 paid")
        assert tap(second) == "declined: table 1's bill is already paid; nothing charged"
        wait_for(lambda: len(brink.applied_payments()) == 1, timeout=20, what="the payment applied")
        wait_for(lambda: "1 payment(s) applied" in status(first.config), timeout=20, what="status")
        second_status = status(second.config)
    finally:
        assert first.stop() == 0
        assert second.stop() == 0
    assert [-t.amount for t in wallet.transactions()] == [1111]
    assert [p["order_id"] for p in brink.applied_payments()] == [70101], "applied once"
    assert sum(1 for r in brink.requests() if r["route"] == "apply_payment") == 1
    assert "0 payment(s) applied, 0 waiting" in second_status, second_status
    assert "1 left to the terminal that booked their sale" in second_status, second_status


# The real pretix wallet numbers its products; a venue's denominations as it would configure them there
REAL_DENOMINATIONS: tuple[ProductSpec, ...] = (
    (101, "Tischrechnung 10 €", 1000),
    (102, "Tischrechnung 1 €", 100),
    (103, "Tischrechnung 10 ct", 10),
    (104, "Tischrechnung 1 ct", 1),
)


def test_two_terminals_paying_one_bill_on_a_wallet_that_does_not_deduplicate_show_the_double_debit(
    tmp_path: Path, brink: BrinkEmulator
) -> None:
    """The real pretix wallet books a second terminal's debit of the same bill too (a README limit).
    Terminal bar1 is killed before its ApplyPayment leaves; bar2 pays the still open bill and applies
    its payment. Restarted, bar1 must not take bar2's POS payment for its own: its payment is held with
    "refund", and its status says so."""
    denominations = "{ 1000 = 101, 100 = 102, 10 = 103, 1 = 104 }"
    with WalletEmulator("real", products=REAL_DENOMINATIONS, latency="real") as wallet:
        wallet.add_wallet(GUEST, 10000)
        first_config, second_config = (
            write_table_config(
                tmp_path / name, wallet, brink, tables=TABLES, terminal_id=name, denominations=denominations
            )
            for name in ("bar1", "bar2")
        )
        first = TerminalProcess(first_config, env={"TAPTILL_CRASHPOINT": "brink.outbox_after_begin"})
        show_bill(first, "ok")
        first.tap(GUEST)
        assert first.wait_dead() == -9, "the crash point did not fire"
        second = TerminalProcess(second_config)
        try:
            show_bill(second, "ok")
            assert tap(second).startswith("approved 11,11 €: table 1 paid"), "the wallet books it again"
            wait_for(lambda: len(brink.applied_payments()) == 1, timeout=20, what="bar2's payment")
            first = TerminalProcess(first_config)
            wait_for(lambda: "1 held for staff" in status(first_config), timeout=30, what="bar1's hold")
            first_status, second_status = status(first_config), status(second_config)
            queue = taptill("queue", "--config", str(first_config)).stdout
        finally:
            assert second.stop() == 0
            assert first.stop() == 0
        assert [-t.amount for t in wallet.transactions()] == [1111, 1111], "both debited (no dedup)"
    (applied,) = brink.applied_payments()
    assert applied["reference"]["taptill_key"].endswith("-bar2-70101"), applied
    assert sum(1 for r in brink.requests() if r["route"] == "apply_payment") == 1
    assert "1 payment(s) applied, 0 waiting, 0 held" in second_status, second_status
    assert "0 payment(s) applied, 0 waiting, 1 held for staff" in first_status, first_status
    assert "the bill was paid by another terminal" in first_status, first_status
    (held,) = [line for line in queue.splitlines() if line.startswith("HELD")]
    assert f"the POS no longer owes it, so refund 11.11 to card {GUEST}" in held, held
    assert "-bar2-70101" in held and "book" not in held, held
