"""``taptill report`` after a scripted shift through the real stacks: a kiosk's top-up, online sales, offline
sales delivered later, one rejected after the fact, one held for reconciliation, one charged but not
dispensed, declined taps; ``taptill run`` as a subprocess against the wallet emulator with a real server's
latency. The report's figures equal the expected ones and the emulator's own ledger, read over its
control API, for the same period, to the cent.

``REPORT_DOCS=docs pytest tests/test_report_run.py`` also writes the README's example report and chart
(docs/report-example.txt, docs/report-chart.png) from this run.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx

from terminal.config import load_config
from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import (
    EMPTY,
    ERIKA,
    MAX,
    STRANGER,
    TerminalProcess,
    kiosk_operators,
    taptill,
    wait_for,
    write_config,
)

OPERATOR = "04C0FFEE000001"
HELD = "04000000000888"  # its terminal dies mid-debit, and its balance moves elsewhere meanwhile
UNSERVED = "04000000000777"  # charged, and the power goes during the pour
GPIO = "[gpio]\nenabled = true\nrelay_pin = 17\nrelay_pulse_ms = {pulse}\nrelay_gap_ms = 50\n"
MOCK_PINS = {"GPIOZERO_PIN_FACTORY": "mock"}


def _tap_config(folder: Path, server: WalletEmulator, pulse_ms: int) -> Path:
    # a debit may take 2.5 s before it counts as unanswered: room to kill the terminal while it is in flight
    extra = GPIO.format(pulse=pulse_ms)
    return write_config(folder, server, extra=extra, budget_ms=3000, timeout_s=2.5)


def _kiosk_config(folder: Path, server: WalletEmulator) -> Path:
    key_line, operators = kiosk_operators(folder, {"olga": OPERATOR})
    extra = f'[topup]\n{key_line}\nbuttons = {{ twenty = "topup_20" }}\nclear_button = "clear"\n{operators}'
    return write_config(folder, server, products=[], mode="topup", extra=extra)


def _states(config: Path) -> list[tuple[str, str, bool]]:
    """(card, state, held) of every sale, read straight from the journal (polled: no process per look)."""
    path = load_config(config).journal_path
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT token_id, state, hold FROM sales ORDER BY id").fetchall()
    return [(str(uid), str(state), bool(hold)) for uid, state, hold in rows]


def _transactions_posted(server: WalletEmulator) -> int:
    return int(server.stats()["requests_by_route"].get("transaction", 0))


def test_the_report_of_a_scripted_shift_equals_the_wallets_ledger(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc", latency="real") as server:
        server.add_wallet(HELD, 1000)
        server.add_wallet(UNSERVED, 2000)
        since = datetime.now(UTC)
        # the kiosk: an operator unlocks it, Erika is credited 20 €
        config = _kiosk_config(tmp_path, server)
        term = TerminalProcess(config)
        term.tap(OPERATOR)
        assert taptill("press", "twenty", "--config", str(config)).returncode == 0
        term.tap(ERIKA)
        wait_for(lambda: _states(config) == [(ERIKA, "done", False)], what="the top-up")
        assert term.stop() == 0

        # the bar, same journal: two sales online, then two offline while the server is away
        config = _tap_config(tmp_path, server, pulse_ms=50)
        term = TerminalProcess(config, env=MOCK_PINS)
        term.tap(MAX)
        term.tap(ERIKA)
        wait_for(lambda: [s[1] for s in _states(config)] == ["done"] * 3, what="the online sales")
        server.faults.set_down(True)
        term.tap(MAX)  # sold offline on the balance seen a moment ago
        server.add_wallet(ERIKA, 100)  # Erika spends at another bar meanwhile
        term.tap(ERIKA)  # sold offline on 22,50 € seen: the wallet refuses it once back
        term.tap(STRANGER)  # never seen online: declined
        wait_for(lambda: len(_states(config)) == 6, what="the offline taps")
        back = datetime.now(UTC)  # the offline sales are journaled before, booked after
        server.faults.set_down(False)
        wait_for(lambda: all(s[1] != "pending" for s in _states(config)), what="the offline sales delivered")
        term.tap(EMPTY)  # online, no money: declined
        wait_for(lambda: len(_states(config)) == 7, what="the declined tap")
        # the terminal dies while a debit hangs at the server (nothing booked); the card's balance moves
        posted = _transactions_posted(server)
        server.faults.inject(FaultKind.HANG, method="POST", route="transaction", times=1)
        term.tap(HELD)
        wait_for(lambda: _transactions_posted(server) > posted, what="the debit to reach the server")
        term.kill()
        server.faults.clear()
        server.add_wallet(HELD, 600)

        # back up, with a long pour: the hung debit is held for a person; a sale loses power mid-pour
        config = _tap_config(tmp_path, server, pulse_ms=5000)
        term = TerminalProcess(config, env=MOCK_PINS)
        wait_for(lambda: _states(config)[-1] == (HELD, "pending", True), timeout=20, what="the hold")
        term.tap(UNSERVED)
        path = load_config(config).journal_path

        def unserved_booked() -> bool:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                row = db.execute("SELECT state FROM sales WHERE token_id = ?", (UNSERVED,)).fetchone()
                return row is not None and row[0] == "done"

        wait_for(unserved_booked, what="the last sale to be booked")
        time.sleep(0.3)  # well inside the 5 s pour
        term.kill()
        until = datetime.now(UTC)
        ledger = httpx.get(f"{server.control_url}/ledger", timeout=5.0).json()

    period = ("--since", since.isoformat(), "--until", until.isoformat())
    report = json.loads(taptill("report", "--format", "json", "--config", str(config), *period).stdout)
    # the emulator's own ledger for the same period: what pretix would show for this terminal
    booked = [t for t in ledger["transactions"] if since.isoformat() <= t["timestamp"] < until.isoformat()]
    assert report["wallet"] == {
        "net_cents": sum(t["amount"] for t in booked),
        "transactions": len(booked),
        "time": "booked",
    }
    assert report["wallet"]["net_cents"] == 2000 - 4 * 250 and report["wallet"]["transactions"] == 5
    # split where the server came back: Max's offline sale is journaled in the first part and booked in the
    # second, and the wallet's figure of each part is what the ledger booked in it
    for start, end in ((since, back), (back, until)):
        part = ("--since", start.isoformat(), "--until", end.isoformat())
        shown = json.loads(taptill("report", "--format", "json", "--config", str(config), *part).stdout)
        in_part = [t for t in ledger["transactions"] if start.isoformat() <= t["timestamp"] < end.isoformat()]
        assert (shown["wallet"]["net_cents"], shown["wallet"]["transactions"]) == (
            sum(t["amount"] for t in in_part),
            len(in_part),
        ), (start, end)
    assert len([t for t in booked if back.isoformat() <= t["timestamp"]]) == 2  # Max offline, the unserved
    sold = Counter(str(p) for t in booked for p in t["products"])
    assert {p["product"]: p["confirmed"]["count"] for p in report["products"]} == sold
    assert sold == {"espresso": 4, "topup_20": 1}
    assert report["debits"] == {
        "sold": {"count": 5, "cents": 1250},
        "confirmed": {"count": 4, "cents": 1000},
        "pending": {"count": 0, "cents": 0},
        "held": {"count": 1, "cents": 250},
        "online": {"count": 4, "cents": 1000},
        "offline": {"count": 1, "cents": 250},
    }
    assert report["topups"]["confirmed"] == report["topups"]["online"] == {"count": 1, "cents": 2000}
    assert report["rejected"] == [
        {"code": "insufficient_balance", "reason": "400: Insufficient balance", "count": 1, "cents": 250}
    ]
    assert report["not_served"] == {"count": 1, "cents": 250}
    assert {d["reason"]: d["count"] for d in report["declined"]} == {
        "offline: card never seen online": 1,
        "insufficient_balance": 1,
    }
    assert sum(h["debits"]["cents"] for h in report["hours"]) == report["debits"]["sold"]["cents"]
    text = taptill("report", "--config", str(config), *period, "--chart", str(tmp_path / "chart.png")).stdout
    assert "Wallet server should show for this terminal: 10.00 EUR net" in text, text
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    docs = os.environ.get("REPORT_DOCS")
    if docs:
        at = "%Y-%m-%dT%H:%M:%S"
        shown = f"$ taptill report --since {since.astimezone():{at}} --until {until.astimezone():{at}}\n"
        (Path(docs) / "report-example.txt").write_text(shown + text)
        shutil.copyfile(tmp_path / "chart.png", Path(docs) / "report-chart.png")
