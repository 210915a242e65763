"""The three ways to sell, end to end: ``taptill run`` against the emulator, buttons via ``taptill press``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import (
    EMPTY,
    ERIKA,
    MAX,
    SMALL,
    TerminalProcess,
    journal_lines,
    kiosk_operators,
    settled,
    taptill,
    wait_for,
    write_config,
)

OPERATOR = "04C0FFEE000001"


def _select_config(
    tmp_path: Path, server: WalletEmulator, timeout_s: float = 30.0, display: str = "none"
) -> Path:
    esp, cap = ("espresso", "cappuccino") if server.flavour == "doc" else (1, 2)
    extra = f"""
[select]
buttons = {{ b1 = {esp!r}, b2 = {cap!r} }}
cancel_button = "cancel"
cart_timeout_s = {timeout_s}
""".replace("'", '"')
    return write_config(tmp_path, server, products=[], mode="select", extra=extra, display=display)


def _topup_config(tmp_path: Path, server: WalletEmulator, unlock_s: float = 60.0, more: str = "") -> Path:
    key_line, operators = kiosk_operators(tmp_path, {"olga": OPERATOR})
    extra = f"""
[topup]
{key_line}
unlock_s = {unlock_s}
buttons = {{ ten = "topup_10", twenty = "topup_20" }}
clear_button = "clear"
{more}
{operators}"""
    return write_config(tmp_path, server, products=[], mode="topup", extra=extra)


def _press(term: TerminalProcess, button: str) -> None:
    pressed = taptill("press", button, "--config", str(term.config), check=False)
    assert pressed.returncode == 0, (pressed.stdout, pressed.stderr)


def test_select_cart_then_tap_pays_it(tmp_path: Path, wallet_server: WalletEmulator) -> None:
    term = TerminalProcess(_select_config(tmp_path, wallet_server))
    try:
        term.tap(MAX)  # empty cart: balance only
        time.sleep(0.3)
        _press(term, "b1")
        _press(term, "b2")
        _press(term, "b1")
        term.tap(MAX)
        wait_for(lambda: settled(term.config, 1), what="the cart's sale")
    finally:
        term.stop()
    (sale,) = journal_lines(term.config)
    assert sale["state"] == "done" and sale["amount_cents"] == -800
    ledger = wallet_server.transactions()
    assert [t.amount for t in ledger] == [-800] and len(ledger[0].products) == 3
    assert wallet_server.balance(MAX) == 1200


def test_a_balance_check_is_the_card_seen_online_for_its_next_offline_tap(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    """A guest checks their balance (empty cart), the server drops, they choose and tap: the balance just
    shown decides offline (the field saw "declined offline: card never seen online")."""
    term = TerminalProcess(_select_config(tmp_path, wallet_server))
    cfg = str(term.config)
    try:
        checked = taptill("tap", MAX, "--config", cfg, check=False)  # nothing chosen: the balance only
        assert checked.stdout.startswith("balance 20,00 €"), checked.stdout
        assert journal_lines(term.config) == []  # no sale: the balance is remembered on its own
        wallet_server.faults.set_down(True)
        _press(term, "b1")
        said = taptill("tap", MAX, "--config", cfg, check=False).stdout
        assert said.startswith("approved") and "offline" in said, said
        (sale,) = journal_lines(term.config)
        assert sale["state"] == "pending" and sale["offline"] is True
        wallet_server.faults.set_down(False)
        wait_for(lambda: settled(term.config, 1), what="the offline sale's delivery")
    finally:
        term.stop()
    assert [t.amount for t in wallet_server.transactions()] == [-250]


def test_select_cancel_and_timeout_empty_the_cart(tmp_path: Path, wallet_server: WalletEmulator) -> None:
    term = TerminalProcess(_select_config(tmp_path, wallet_server, timeout_s=1.0))
    try:
        _press(term, "b1")
        _press(term, "cancel")
        term.tap(MAX)  # nothing chosen: balance only
        time.sleep(0.3)
        _press(term, "b2")
        time.sleep(1.6)  # the guest walked away
        term.tap(ERIKA)
        time.sleep(0.5)
    finally:
        term.stop()
    assert journal_lines(term.config) == [] and wallet_server.transactions() == []


def test_a_declined_guests_cart_is_not_paid_by_the_next_guest(
    tmp_path: Path, wallet_server: WalletEmulator
) -> None:
    # The field: the cart stayed after a declined tap, and the next card paid for it.
    term = TerminalProcess(_select_config(tmp_path, wallet_server, display="console"))
    cfg = str(term.config)
    try:
        _press(term, "b2")  # guest A: a cappuccino, 3,00 €
        guest_a = taptill("tap", SMALL, "--config", cfg, check=False)  # 1,00 € on the card
        wait_for(lambda: term.log().count("Choose, then tap") >= 2, what="the idle screen after A's decline")
        guest_b = taptill("tap", MAX, "--config", cfg, check=False)  # chose nothing
        wait_for(lambda: term.log().count("Choose, then tap") >= 3, what="the idle screen after B's tap")
        log = term.log()
    finally:
        term.stop()
    assert guest_a.returncode == 1 and guest_a.stdout.startswith("declined: insufficient balance")
    assert (guest_b.returncode, guest_b.stdout) == (
        0,
        "balance 20,00 €: nothing charged (the cart is empty)\n",
    )
    assert wallet_server.transactions() == [] and wallet_server.balance(MAX) == 2000
    (declined,) = journal_lines(term.config)
    assert (declined["token_id"], declined["state"], declined["amount_cents"]) == (SMALL, "declined", -300)
    # What the screen showed, in order: A's cart, the decline, then the board (no cart) for guest B.
    titles = [line.split("─")[1].strip() for line in log.splitlines() if line.startswith("┌─ ")]
    assert titles == [
        *("Choose, then tap", "Total 3,00 €", "Processing", "Declined", "Choose, then tap"),
        *("Processing", "Balance", "Choose, then tap"),
    ], titles


def test_kiosk_operator_unlocks_and_the_guest_is_credited(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as server:
        term = TerminalProcess(_topup_config(tmp_path, server))
        try:
            term.tap(ERIKA)  # locked: a guest card does nothing but say so
            time.sleep(0.3)
            locked_press = taptill("press", "ten", "--config", str(term.config), check=False)
            assert (locked_press.returncode, locked_press.stdout) == (  # locked: buttons do nothing
                1,
                "declined: the kiosk is locked: an operator card unlocks it\n",
            )
            term.tap(OPERATOR)
            _press(term, "ten")
            _press(term, "twenty")
            term.tap(ERIKA)
            wait_for(lambda: settled(term.config, 1), what="the top-up")
        finally:
            term.stop()
        assert [(t.token_id, t.amount) for t in server.transactions()] == [(ERIKA, 3000)]
        assert server.balance(ERIKA) == 3500
    # The guest's tap on the locked kiosk is a declined tap (status counts it), and moved no money.
    locked, sale = journal_lines(term.config)
    assert (locked["token_id"], locked["state"], locked["amount_cents"]) == (ERIKA, "declined", 0)
    assert sale["amount_cents"] == 3000 and sale["state"] == "done"
    assert sale["operator"] == "olga"


def test_kiosk_relocks_on_timeout(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as server:
        term = TerminalProcess(_topup_config(tmp_path, server, unlock_s=1.0))
        try:
            term.tap(OPERATOR)
            # on a loaded machine the kiosk may relock before this press arrives (it then says declined)
            taptill("press", "ten", "--config", str(term.config), check=False)
            time.sleep(1.8)
            term.tap(EMPTY)
            time.sleep(0.5)
        finally:
            term.stop()
        assert server.transactions() == []
    # Re-locked: the guest's tap was declined (journaled as such), nothing was sold or credited.
    (locked,) = journal_lines(term.config)
    assert (locked["token_id"], locked["state"], locked["amount_cents"]) == (EMPTY, "declined", 0)


def test_a_debit_terminal_refuses_to_run_a_kiosk(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc", permission="debit") as server:
        config = _topup_config(tmp_path, server)
        proc = taptill("run", "--config", str(config), check=False, timeout=30)
    assert proc.returncode == 2
    assert "permission is 'debit'" in proc.stderr and "mode = 'topup'" in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("taptill:")]
    assert len(errors) == 1 and "permission" in errors[0]


@pytest.mark.crash
@pytest.mark.parametrize("point", ["after_journal", "after_answer"])
def test_kill_during_a_top_up_loses_and_doubles_nothing(tmp_path: Path, point: str) -> None:
    """Killed before the operator saw "Credited": the top-up is never sent again (the operator, who
    holds the cash, would book it again); booked before the kill, it is done and listed for checking."""
    with WalletEmulator.demo("doc") as server:
        config = _topup_config(tmp_path, server)
        term = TerminalProcess(config, env={"TAPTILL_CRASHPOINT": point})
        term.tap(OPERATOR)
        _press(term, "ten")
        term.tap(ERIKA)
        assert term.wait_dead() == -9
        assert [s["state"] for s in journal_lines(config)] == ["pending"]
        again = TerminalProcess(config)
        try:
            wait_for(lambda: settled(config, 1), what="the top-up to be settled after the restart")
        finally:
            again.stop()
        booked = point == "after_answer"
        assert [(t.token_id, t.amount) for t in server.transactions()] == ([(ERIKA, 1000)] if booked else [])
        assert server.balance(ERIKA) == (1500 if booked else 500)
    (sale,) = journal_lines(config)
    assert sale["state"] == ("done" if booked else "rejected") and sale["approved"] is False, sale
    queue = taptill("queue", "--config", str(config)).stdout
    assert ("CREDITED, NEVER CONFIRMED" in queue) == booked, queue


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("select", ["Balance", "Total 5,50 €", "Approved", "Balance 14,50 €", "now 1450 cents"]),
        ("topup", ["Locked: ask staff", "+30,00 €", "Credited", "Balance 35,00 €", "now 3500 cents"]),
        (
            "table",
            ["11,11 €", "Bill already paid", "now 28,39 €", "No open bill", "1111, 2839 cents", "6050 cents"],
        ),
    ],
)
def test_demo_plays_each_mode(tmp_path: Path, mode: str, expected: list[str]) -> None:
    proc = taptill("demo", "--mode", mode, "--out", str(tmp_path / "demo"), timeout=90)
    for text in expected:
        assert text in proc.stdout, text
    assert any((tmp_path / "demo" / "screens").glob("frame-*.png"))
