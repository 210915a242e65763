"""``taptill doctor`` against a healthy terminal set-up and broken ones."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from terminal.controller.operators import card_entry, new_operator_key, parse_operator_key, pin_entry
from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
from terminal.ops.doctor import SERVER_TIMEOUT_S, diagnose
from tests.terminal_lab import (
    MAX,
    TerminalProcess,
    journal_lines,
    kiosk_operators,
    taptill,
    wait_for,
    write_config,
)


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
        "cards",
        "outbox",
        "metrics",
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
        unlisted = statuses(config)
        (tmp_path / "wallet.token").write_text("wrong-token")
        refused = statuses(config)
    # tap mode: every tap pays both, so the one the server does not list declines every tap (the field
    # saw a terminal report ready and decline every tap while doctor only warned)
    assert unlisted["server"][0] == "FAIL" and "champagne" in unlisted["server"][1]
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
    # a clock stepped back since the sale: its age is never negative, the step is named instead
    assert "(-" not in behind["queue"][1] and "72.0 h ahead of this clock" in behind["queue"][1]
    assert "(0.0 h)" in fresh["queue"][1]


def test_the_server_check_names_the_permission_the_config_gives_a_real_server(tmp_path: Path) -> None:
    # The real plugin's terminal info has no permission: the config's [wallet] permission is what holds.
    with WalletEmulator.demo("real") as emulator:
        config = write_config(tmp_path, emulator)
        config.write_text(
            config.read_text().replace("dedupes = false\n", 'dedupes = false\npermission = "all"\n')
        )
        checks = statuses(config)
    assert checks["server"][0] == "OK" and "permission all" in checks["server"][1], checks["server"]


def kiosk_config(folder: Path, emulator: WalletEmulator, topup: str, *, pin: bool = True) -> Path:
    """A top-up kiosk with three buttons and operator olga (with a 7-press PIN when ``pin``)."""
    folder.mkdir()
    key_line, _ = kiosk_operators(folder, {})
    key = parse_operator_key((folder / "operator.key").read_text())
    card = card_entry(key, "0000BEEF")
    presses = ("ten",) * 7
    entry = f'{{ card = "{card}", pin = "{pin_entry(key, "olga", presses)}" }}' if pin else f'"{card}"'
    extra = (
        f'[topup]\n{key_line}\nbuttons = {{ ten = "topup_10", twenty = "topup_20" }}\n'
        f'clear_button = "clear"\n{topup}\n[topup.operators]\nolga = {entry}\n'
    )
    return write_config(folder, emulator, products=[], mode="topup", extra=extra)


def test_a_kiosk_is_told_how_fast_a_cloned_card_tries_every_pin_and_what_a_stolen_unlock_credits(
    tmp_path: Path,
) -> None:
    with WalletEmulator.demo("doc") as emulator:
        weak = statuses(kiosk_config(tmp_path / "weak", emulator, "pin_required = true\npin_length = 7"))
        strong = statuses(
            kiosk_config(
                tmp_path / "strong",
                emulator,
                "pin_length = 7\npin_lockout_s = 900\nmax_credit_per_shift_cents = 50000",
            )
        )
        bare = statuses(kiosk_config(tmp_path / "bare", emulator, "", pin=False))
    assert weak["pin"] == (
        "WARN",
        "2187 PINs (3 buttons, 7 presses); a cloned operator card tries them all within 2.5 days "
        "(3 guesses per 300 s lockout); raise [topup] pin_length or pin_lockout_s",
    )
    assert weak["caps"][0] == "WARN" and "set [topup] max_credit_per_shift_cents" in weak["caps"][1]
    assert strong["pin"][0] == "OK" and "within 7.6 days" in strong["pin"][1]
    assert strong["caps"] == ("OK", "per unlock no cap, per operator and day 500,00 €, offline 200,00 €")
    assert bare["pin"][0] == "WARN" and "set [topup] pin_required = true" in bare["pin"][1]
    assert all(s[0] != "FAIL" for s in (*weak.values(), *strong.values(), *bare.values())), weak


def test_the_operator_key_is_checked_for_mode_owner_and_the_entries_made_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = kiosk_config(tmp_path / "k", emulator, "pin_required = true\npin_length = 7")
        key_file = tmp_path / "k" / "operator.key"
        original = key_file.read_text()
        good = statuses(config)["operators"]
        key_file.chmod(0o640)
        readable = statuses(config)["operators"]
        key_file.chmod(0o600)
        os.chown(key_file, 4242, 4242)  # another user's file: they read the key
        foreign = statuses(config)["operators"]
        os.chown(key_file, 0, 0)
        old = config.read_text()
        card = old.split('card = "')[1].split('"')[0]
        pin = old.split('pin = "')[1].split('"')[0]
        unkeyed = "hmac-sha256:" + card.rsplit(":", 1)[1]
        config.write_text(old.replace(card, unkeyed))  # an entry from before entries had a key id
        unchecked = statuses(config)["operators"]
        config.write_text(old.replace(card, unkeyed).replace(pin, "hmac-sha256:" + pin.rsplit(":", 1)[1]))
        key_file.write_text(new_operator_key() + "\n")  # the key replaced: old-style entries cannot tell
        silent = statuses(config)["operators"]
        config.write_text(old)
        replaced = statuses(config)["operators"]
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        (credentials / "topup.operator_key").write_text(original)  # the key, as systemd passes it
        key_file.unlink()
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
        from_credential = statuses(config)["operators"]
    assert good == ("OK", f"1 operator made under {key_file}")
    assert readable == ("FAIL", f"{key_file} is mode 0640, readable by others; run: chmod 600 {key_file}")
    assert foreign[0] == "FAIL" and "owned by 4242, who can read the key; run: chown root" in foreign[1]
    assert unchecked[0] == "WARN" and unchecked[1].startswith("olga: entries from before they carried")
    assert silent[0] == "WARN"
    assert replaced[0] == "FAIL" and "olga: made under another operator key" in replaced[1]
    assert "taptill operator add olga" in replaced[1]
    assert from_credential == ("OK", "1 operator made under the topup.operator_key credential")


def test_the_metrics_line_says_configured_listening_and_token(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        plain = write_config(tmp_path / "off", emulator)
        assert statuses(plain)["metrics"] == (
            "OK",
            "not configured ([metrics] listen is not set): nothing listens",
        )
        token = tmp_path / "on" / "metrics.token"
        token.parent.mkdir()
        token.write_text("metrics-token-for-doctor\n")
        token.chmod(0o600)
        config = write_config(
            tmp_path / "on",
            emulator,
            extra='\n[metrics]\nlisten = "127.0.0.1:0"\ntoken_file = "metrics.token"\n',
        )
        status, detail = statuses(config)["metrics"]
        assert (status, detail) == (
            "OK",
            "127.0.0.1:0 is free for the endpoint (taptill is not running); bearer token set",
        )
        term = TerminalProcess(config)
        try:
            port = int(re.search(r"metrics at http://127\.0\.0\.1:(\d+)/", term.log()).group(1))  # type: ignore[union-attr]
            config.write_text(config.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
            status, detail = statuses(config)["metrics"]
            assert status == "OK" and f"serves http://127.0.0.1:{port}/metrics; bearer token set" in detail, (
                detail
            )
        finally:
            assert term.stop() == 0
        token.chmod(0o644)
        status, detail = statuses(config)["metrics"]
    assert status == "FAIL" and detail.startswith("[metrics] token_file: ") and "chmod 600" in detail, detail
    assert "metrics-token-for-doctor" not in detail
