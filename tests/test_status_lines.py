"""What `taptill status` tells an operator about a running terminal: the wallet server as the terminal sees
it (online, offline since when and why, token refused), a kiosk's declines and its locked-out operator
cards, in lines and in JSON."""

from __future__ import annotations

import json
from pathlib import Path

from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import (
    ERIKA,
    MAX,
    TerminalProcess,
    journal_lines,
    pin_kiosk,
    taptill,
    wait_for,
    write_config,
)

OPERATOR = "0000BEEF"
PIN = ("ten", "clear", "twenty", "ten", "twenty", "clear", "ten")  # 3 ** 7 PINs: enough for the config


def _server_line(config: Path) -> str:
    out = taptill("status", "--config", str(config)).stdout
    lines = [ln for ln in out.splitlines() if ln.startswith("wallet server:")]
    assert len(lines) == 1, out
    return lines[0]


def _server_json(config: Path) -> dict[str, object]:
    data = json.loads(taptill("status", "--json", "--config", str(config)).stdout)
    server = data["wallet_server"]
    assert isinstance(server, dict)
    return server


def test_status_says_when_the_wallet_server_went_away_and_when_it_came_back(tmp_path: Path) -> None:
    server = WalletEmulator.demo("doc").start()
    port = server.port
    config = write_config(tmp_path, server, probe_s=0.2)
    term = TerminalProcess(config)
    assert _server_line(config).startswith("wallet server:   online since "), _server_line(config)

    server.stop()  # an outage while the terminal runs: the next guest finds it
    term.tap(MAX)
    wait_for(lambda: "OFFLINE" in _server_line(config), what="status to see the outage")
    line = _server_line(config)
    assert line.startswith("wallet server:   OFFLINE since ") and "taps are decided offline" in line, line
    offline = _server_json(config)
    assert offline["running"] is True and offline["online"] is False and offline["token_refused"] is None
    assert offline["problem"] and isinstance(offline["since"], float), offline

    with WalletEmulator.demo("doc", port=port):  # back on the same address: the outbox's probe finds it
        wait_for(lambda: "online since" in _server_line(config), what="status to see the server back")
        back = _server_json(config)
        assert back["online"] is True and back["problem"] is None, back
        assert float(str(back["since"])) >= float(str(offline["since"]))
        assert term.stop() == 0
    assert "Traceback" not in term.log()
    # what a stopped terminal last saw is not news about the server
    assert _server_line(config) == "wallet server:   unknown: no taptill run uses this state directory"


def test_a_kiosks_wrong_pins_and_lockout_are_declined_taps_and_status_names_the_locked_out_card(
    tmp_path: Path,
) -> None:
    extra = pin_kiosk(tmp_path, "olga", OPERATOR, PIN, pin_attempts=2, pin_lockout_s=600)
    with WalletEmulator.demo("doc") as server:
        config = write_config(tmp_path, server, products=[], mode="topup", extra=extra)
        term = TerminalProcess(config)
        assert "LOCKED OUT" not in taptill("status", "--config", str(config)).stdout
        for _ in range(2):  # a wrong PIN, then the lockout
            assert term.send(f"tap-wait {OPERATOR}") == "operator: enter the PIN with the buttons"
            for b in ("twenty",) * 7:
                assert term.send(f"press {b}") == "ok"
        wait_for(lambda: len(journal_lines(config)) == 2, what="the wrong PIN and the lockout journaled")
        assert term.send(f"tap-wait {OPERATOR}").startswith("declined: too many wrong PINs")
        assert term.send(f"tap-wait {ERIKA}").startswith("declined: the kiosk is locked")
        status = taptill("status", "--config", str(config)).stdout
        data = json.loads(taptill("status", "--json", "--config", str(config)).stdout)
        assert term.stop() == 0
        assert not server.transactions()
    assert "declined taps:   4" in status, status
    (line,) = [ln for ln in status.splitlines() if ln.startswith("LOCKED OUT:")]
    assert line.startswith("LOCKED OUT:      operator olga's card, for another "), line
    assert "2 wrong PINs" in line, line
    assert data["declined"] == 4
    (lockout,) = data["locked_out_operators"]
    # on the boot-time clock: 600 s less the seconds this test took, never more
    assert lockout["operator"] == "olga" and lockout["wrong"] == 2 and 0 < lockout["left_s"] <= 600
    lines = journal_lines(config)
    assert [(ln["state"], ln["reason"], ln["operator"]) for ln in lines] == [
        ("declined", "wrong_pin", "olga"),
        ("declined", "pin_locked_out", "olga"),
        ("declined", "pin_locked_out", "olga"),
        ("declined", "kiosk_locked", None),
    ]
    # the operator card's UID stays a secret of the config's hashes
    assert OPERATOR not in json.dumps(lines) and lines[-1]["token_id"] == ERIKA
