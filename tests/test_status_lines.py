"""What `taptill status` tells an operator about a running terminal: the wallet server as the terminal sees
it (online, offline since when and why, token refused), in lines and in JSON."""

from __future__ import annotations

import json
from pathlib import Path

from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import MAX, TerminalProcess, taptill, wait_for, write_config


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
