"""A wallet token revoked while the terminal runs (the emulator answers 401 to it, switched through its
control endpoint): the terminal goes out of service instead of telling each guest "server trouble",
`status` and `doctor` name the token file, and it sells again by itself once the token is accepted."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import MAX, TerminalProcess, taptill, wait_for, write_config

OUT_OF_SERVICE = "┌─ Out of service"


def _revoke(server: WalletEmulator, revoked: bool) -> None:
    request = urllib.request.Request(
        server.control_url + "/token",
        data=json.dumps({"revoked": revoked}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read()) == {"revoked": revoked}


def _lookups(server: WalletEmulator) -> int:
    return int(server.stats()["requests_by_route"].get("wallet", 0))


def test_a_revoked_token_puts_the_terminal_out_of_service_until_it_is_accepted_again(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as server:
        config = write_config(tmp_path, server, display="console", probe_s=0.2)
        token_file = tmp_path / "wallet.token"
        term = TerminalProcess(config)
        term.tap(MAX)
        wait_for(lambda: len(server.transactions()) == 1, what="a sale with the token still valid")
        wait_for(lambda: "relay: 1 pulse(s)" in term.log(), what="the first sale's pulse")

        _revoke(server, True)
        mark = len(term.log())
        term.tap(MAX)  # the first guest after the revocation learns it for the terminal
        wait_for(lambda: OUT_OF_SERVICE in term.log()[mark:], what="the out-of-service screen")
        log = term.log()[mark:]
        assert "Please ask staff" in log and "not authorised" not in log, log  # guest words
        assert "Server trouble" not in log, log
        assert "wallet server refuses the API token" in log, log

        lookups = _lookups(server)
        term.tap(MAX)  # the next guest is not sent to the server at all
        status = taptill("status", "--config", str(config)).stdout
        assert "OUT OF SERVICE:  the wallet server refuses the API token since" in status, status
        assert f"put a valid token in {token_file}" in status, status
        assert "wallet server:   TOKEN REFUSED since" in status, status
        doctor = taptill("doctor", "--config", str(config), check=False)
        assert doctor.returncode == 1, doctor.stdout
        server_line = next(ln for ln in doctor.stdout.splitlines() if ln.split()[1:2] == ["server"])
        assert server_line.startswith("FAIL") and f"put a valid token in {token_file}" in server_line
        assert "Invalid token." in server_line, server_line
        assert _lookups(server) == lookups, "a tap while out of service asked the server"
        assert len(server.transactions()) == 1
        assert "Server trouble" not in term.log()[mark:]

        _revoke(server, False)
        wait_for(
            lambda: "wallet server accepts the API token again" in term.log()[mark:],
            what="the outbox's probe to find the token accepted",
        )
        assert "OUT OF SERVICE" not in taptill("status", "--config", str(config)).stdout
        term.tap(MAX)
        wait_for(lambda: len(server.transactions()) == 2, what="a sale once the token works again")
        assert term.stop() == 0
        assert "Traceback" not in term.log()
