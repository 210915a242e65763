"""``taptill doctor`` against a healthy terminal set-up and broken ones."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from terminal.ops.doctor import SERVER_TIMEOUT_S, diagnose
from tests.terminal_lab import MAX, TerminalProcess, journal_lines, taptill, wait_for, write_config


def statuses(config: Path, now: datetime | None = None) -> dict[str, tuple[str, str]]:
    checks = diagnose(config, now=(lambda: now) if now else None)
    return {c.name: (c.status, c.detail) for c in checks}


def test_healthy_terminal_is_all_ok(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
        term = TerminalProcess(config)
        try:
            term.tap(MAX)
            wait_for(lambda: any(s["state"] == "done" for s in journal_lines(config)), what="a settled sale")
        finally:
            assert term.stop() == 0
        proc = taptill("doctor", "--config", str(config), check=False)
        as_json = taptill("doctor", "--config", str(config), "--json", check=False)
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    names = [line.split()[1] for line in lines]
    assert names == [
        "config",
        "secrets",
        "transport",
        "server",
        "clock",
        "reader",
        "display",
        "disk",
        "journal",
        "queue",
        "products",
        "outbox",
        "partybroker",
        "ready2order",
    ]
    assert all(line.startswith("OK ") for line in lines), proc.stdout
    assert "Kaffeemaschine" in proc.stdout and "0 pending" in proc.stdout and "not configured" in proc.stdout
    assert emulator.api_token not in proc.stdout
    parsed = json.loads(as_json.stdout)
    assert {c["name"]: c["status"] for c in parsed}["server"] == "OK"


def test_world_readable_token_and_server_down_fail(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
        (tmp_path / "wallet.token").chmod(0o644)
        proc = taptill("doctor", "--config", str(config), check=False)
        assert proc.returncode == 1
        assert f"FAIL secrets     {tmp_path / 'wallet.token'} is mode 0644" in proc.stdout
        assert "chmod 600" in proc.stdout
        (tmp_path / "wallet.token").chmod(0o600)
        emulator.faults.set_down(True)
        down = statuses(config)
    assert down["secrets"][0] == "OK"
    assert down["server"][0] == "FAIL" and "unreachable" in down["server"][1]


def test_a_dripping_server_fails_the_server_check_at_its_deadline(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
        # 200 ms a byte: the terminal info alone would take over a minute to arrive
        emulator.faults.inject(FaultKind.DRIP_AFTER, ms=200, cap_s=120, method="GET")
        started = time.monotonic()
        proc = taptill("doctor", "--config", str(config), check=False, timeout=SERVER_TIMEOUT_S + 40)
        elapsed = time.monotonic() - started
    (server,) = [line for line in proc.stdout.splitlines() if line.split()[1:2] == ["server"]]
    assert proc.returncode == 1
    assert server.startswith("FAIL") and f"no complete answer within {SERVER_TIMEOUT_S:g} s" in server
    assert (
        SERVER_TIMEOUT_S <= elapsed <= SERVER_TIMEOUT_S + 15
    )  # slack: two Python start-ups, a loaded machine


def test_refused_token_and_unknown_product(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator, products=["espresso", "champagne"])
        warn = statuses(config)
        (tmp_path / "wallet.token").write_text("wrong-token")
        refused = statuses(config)
    assert warn["server"][0] == "WARN" and "champagne" in warn["server"][1]
    assert refused["server"][0] == "FAIL" and "refused the token" in refused["server"][1]


def test_broken_config_is_one_fail_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[terminal]\nstate_dir = 3\n")
    proc = taptill("doctor", "--config", str(config), check=False)
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAIL config") and len(proc.stdout.splitlines()) == 1


def test_missing_hardware_fails_with_a_fix(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator)
        text = config.read_text().replace('kind = "none"', 'kind = "oled"\ni2c_port = 7')
        config.write_text(text.replace('kind = "sim"', 'kind = "pcsc"'))
        found = statuses(config)
    assert found["display"][0] == "FAIL" and "/dev/i2c-7" in found["display"][1]
    assert found["reader"][0] == "FAIL" and "pcscd" in found["reader"][1]


def test_clock_and_old_pending_sales(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = write_config(tmp_path, emulator, offline_mode="accept")
        term = TerminalProcess(config)
        try:
            term.tap(MAX)  # online: the terminal learns the card's balance
            wait_for(lambda: any(s["state"] == "done" for s in journal_lines(config)), what="a settled sale")
            emulator.faults.set_down(True)
            term.tap(MAX)  # accepted offline, stays pending while the server is down
            wait_for(lambda: any(s["state"] == "pending" for s in journal_lines(config)), what="offline sale")
        finally:
            assert term.stop() == 0
        pending = [s for s in journal_lines(config) if s["state"] == "pending"]
        sale_time = datetime.fromisoformat(pending[0]["created_at"])
        fresh = statuses(config, sale_time + timedelta(minutes=1))
        stale = statuses(config, sale_time + timedelta(days=2))
        behind = statuses(config, sale_time - timedelta(days=3))
        ancient = statuses(config, datetime(2001, 1, 1, tzinfo=UTC))
    assert fresh["queue"][0] == "OK" and "1 pending" in fresh["queue"][1]
    assert stale["queue"][0] == "FAIL" and "taptill queue" in stale["queue"][1]
    # three days behind: before this build (checked first; the files are fresh here) and the last sale
    assert behind["clock"][0] == "FAIL" and "before this build" in behind["clock"][1]
    assert ancient["clock"][0] == "FAIL" and "timedatectl" in ancient["clock"][1]
    assert fresh["clock"][0] == "OK"
