"""A tap whose debit the server answers with an error: served only when the balance shows it booked.

A real pretix answers 500 once it is done with a request (it rolls the order back, or crashed after it
booked): the balance read at once tells which. Approving on a guess gave products away (an item the
server can never book) or left the guest's shown balance wrong.
"""

from __future__ import annotations

import time
from pathlib import Path

from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import (
    MAX,
    TerminalProcess,
    espresso,
    journal_lines,
    settled,
    taptill,
    wait_for,
    write_config,
)

PRICE = 250  # the demo espresso, cents


def _tap(config: Path) -> tuple[int, str]:
    done = taptill("tap", MAX, "--config", str(config), check=False)
    return done.returncode, done.stdout.strip()


def test_a_debit_booked_before_the_server_failed_is_approved_with_the_real_balance(
    tmp_path: Path, wallet_server: WalletEmulator, flavour: str
) -> None:
    wallet_server.faults.inject(FaultKind.ERROR500_AFTER, times=1, method="POST", route="transaction")
    config = write_config(tmp_path, wallet_server, products=[espresso(flavour)])
    term = TerminalProcess(config)
    try:
        code, line = _tap(config)
        assert code == 0 and line.startswith("approved 2,50 €, balance 17,50 €"), line
        assert "estimated" not in line, line
        wait_for(lambda: settled(config, 1), what="the sale")
    finally:
        assert term.stop() == 0
    sale = journal_lines(config)[0]
    assert sale["state"] == "done" and sale["approved"] is True, sale
    assert [t.amount for t in wallet_server.transactions()] == [-PRICE]


def test_a_debit_the_server_failed_without_booking_is_declined_and_never_sent_again(
    tmp_path: Path, wallet_server: WalletEmulator, flavour: str
) -> None:
    wallet_server.faults.inject(FaultKind.ERROR500_BEFORE, times=1, method="POST", route="transaction")
    config = write_config(tmp_path, wallet_server, products=[espresso(flavour)], display="console")
    term = TerminalProcess(config)
    try:
        code, line = _tap(config)
        assert code == 1 and line.startswith("declined"), line
        wait_for(lambda: settled(config, 1), what="the sale")
        time.sleep(1.0)  # outbox rounds: a declined sale must not go out again
    finally:
        assert term.stop() == 0
    sale = journal_lines(config)[0]
    assert sale["state"] == "rejected" and sale["approved"] is False, sale
    assert wallet_server.transactions() == []
    assert wallet_server.stats()["requests_by_route"]["transaction"] == 1
    assert "relay: 1 pulse(s)" not in term.log()


def test_the_shown_balance_of_a_queued_sale_counts_the_cards_other_sales_on_their_way(
    tmp_path: Path, wallet_server: WalletEmulator, flavour: str
) -> None:
    # Debits hang past the tap budget: each tap is approved on the balance read, the sale queued. They
    # hang until released, within a client deadline longer than both taps: a debit timing out between
    # the taps (a `taptill tap` start-up on a loaded machine) would send the terminal offline, and the
    # second tap would be sold without a balance read.
    wallet_server.faults.inject(FaultKind.HANG, method="POST", route="transaction", cap_s=60)
    config = write_config(tmp_path, wallet_server, products=[espresso(flavour)], timeout_s=60)
    term = TerminalProcess(config)
    try:
        first = _tap(config)
        second = _tap(config)
    finally:
        wallet_server.faults.clear()  # releases the hanging debits: nothing was booked
        assert term.stop() == 0
    assert first[0] == 0 and "balance 17,50 € (estimated)" in first[1], first
    # The server still says 20,00: the guest has 20,00 less this espresso and the one before.
    assert second[0] == 0 and "balance 15,00 € (estimated)" in second[1], second


def test_a_queued_sales_estimate_does_not_count_twice_a_sale_the_server_booked_but_never_answered(
    tmp_path: Path,
) -> None:
    """Sale A went out for 2,50 € on 20,00 €; its answer was lost, the server booked it. The next tap reads
    17,50 € (A included): the estimate after a second 2,50 € is 15,00 €, not 12,50 €."""
    from terminal.device_loop import _estimate
    from terminal.effects import Charge
    from terminal.journal import Journal

    journal = Journal.open(tmp_path / "journal.sqlite3")
    try:
        journal.record_sale(
            token_id=MAX,
            products=["espresso"],
            amount_cents=-250,
            description="Kaffee",
            tag=None,
            offline=False,
            balance_before=2000,
            attempting=True,
        )
        others = journal.pending_for_card(MAX)
    finally:
        journal.close()

    def shown(read_cents: int) -> int | None:
        return _estimate(Charge(MAX, ("espresso",), -250, online=True, balance_before=read_cents), others)

    assert shown(1750) == 1500  # A is in the read: booked, its answer lost
    assert shown(2000) == 1500  # A not booked yet (still on its way)
    assert shown(1900) is None  # the wallet moved elsewhere meanwhile: no figure rather than a wrong one
