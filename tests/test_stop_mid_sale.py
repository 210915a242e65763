"""Stopping mid-sale: SIGTERM, SIGINT or SIGHUP to a real ``taptill run`` while a sale waits for the server.

The field fault: the sale was approved after the signal and the relay released in the same millisecond
as its pulse began, so the guest was charged and may have got nothing; SIGHUP killed the process without
releasing the outputs or removing the socket. Now a stop takes no new tap, lets the sale under way reach
its decision and its whole dispense, then releases; the journal says for every sale whether it was
dispensed, and ``taptill queue`` lists those charged but not dispensed.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import pytest

from terminal.config import load_config
from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import MAX, TerminalProcess, espresso, journal_lines, taptill, wait_for, write_config

PULSE_MS = 400


def _gpio_config(tmp_path: Path, server: WalletEmulator) -> Path:
    """The sim reader and a real relay on gpiozero's mock pins (GPIOZERO_PIN_FACTORY=mock)."""
    gpio = f"[gpio]\nenabled = true\nrelay_pin = 17\nrelay_pulse_ms = {PULSE_MS}\nrelay_gap_ms = 50\n"
    return write_config(tmp_path, server, extra=gpio, timeout_s=5.0)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_while_the_debit_is_in_flight_finishes_the_sale_and_its_dispense(
    tmp_path: Path, sig: signal.Signals
) -> None:
    with WalletEmulator.demo("real", latency="real") as server:
        server.faults.inject(FaultKind.LATENCY, ms=400, method="POST", times=1)  # inside the tap budget
        config = _gpio_config(tmp_path, server)
        term = TerminalProcess(config, env={"GPIOZERO_PIN_FACTORY": "mock"})
        socket = load_config(config).reader.socket
        term.tap(MAX)
        wait_for(
            lambda: server.stats()["requests_by_route"].get("transaction", 0) >= 1,
            what="the debit to reach the server",
        )
        signalled = time.monotonic()
        term.proc.send_signal(sig)
        time.sleep(0.05)
        assert term.send("tap 0455667788AABB") == "ok"  # a tap after the signal: not taken
        code = term.wait_dead(timeout=20)
        took = time.monotonic() - signalled
        log = term.log()
    assert code == 0, log
    (sale,) = journal_lines(config)  # the second card's tap was never started
    assert sale["state"] == "done" and sale["token_id"] == MAX, sale
    assert sale["dispensed"] is True, f"charged but not dispensed:\n{log}"
    assert [t.amount for t in server.transactions()] == [-250]
    assert "not dispensed" not in log, log
    assert took >= PULSE_MS / 1000, "the process ended before the relay's pulse could have been given"
    assert not socket.exists(), "the sim reader's socket must be removed on a clean stop"
    assert "taptill stopped" in log


def test_a_sale_whose_dispense_was_cut_short_is_listed_as_charged_not_dispensed(tmp_path: Path) -> None:
    """A kill in the middle of the pulse (power cut, watchdog): the journal keeps it not dispensed."""
    with WalletEmulator.demo("doc") as server:
        config = _gpio_config(tmp_path, server)
        config.write_text(config.read_text().replace(f"relay_pulse_ms = {PULSE_MS}", "relay_pulse_ms = 5000"))
        term = TerminalProcess(config, env={"GPIOZERO_PIN_FACTORY": "mock"})
        term.tap(MAX)
        path = load_config(config).journal_path

        def done_in_journal() -> bool:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                return bool(db.execute("SELECT COUNT(*) FROM sales WHERE state = 'done'").fetchone()[0] == 1)

        wait_for(done_in_journal, what="the sale to be booked")
        time.sleep(0.3)  # well inside the 5 s pulse
        term.kill()
    (sale,) = journal_lines(config)
    assert sale["state"] == "done" and sale["dispensed"] is False, sale
    queue = taptill("queue", "--config", str(config)).stdout
    assert "CHARGED, NOT DISPENSED" in queue and sale["idempotency_key"] in queue, queue


def test_top_ups_and_declines_have_nothing_to_dispense(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as server:
        config = write_config(tmp_path, server)
        term = TerminalProcess(config)
        try:
            term.tap(MAX)
            term.tap("04000000000001")  # no money: declined
            wait_for(lambda: [s["state"] for s in journal_lines(config)] == ["done", "declined"])
            wait_for(lambda: journal_lines(config)[0]["dispensed"] is True, what="the dispense to be noted")
        finally:
            assert term.stop() == 0
    assert journal_lines(config)[1]["dispensed"] is None
    assert espresso("doc") == "espresso"
