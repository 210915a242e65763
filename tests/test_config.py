"""The config loader: the scripting-contract keys, defaults, and one clear line for every mistake."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from terminal.config import ConfigError, load_config, parse_config

MINIMAL: dict[str, Any] = {
    "terminal": {"state_dir": "/var/lib/taptill", "products": ["espresso"], "description": "Kaffee"},
    "wallet": {"base_url": "https://pretix.example/api/v1/organizers/fsr/events/kaffee/wallet"},
}

CONTRACT_TOML = """
[terminal]
state_dir = "/var/lib/taptill"
products = ["espresso", 7]
description = "Kaffee"
tag = "coffee"
[wallet]
base_url = "https://pretix.example/api/v1/organizers/fsr/events/kaffee/wallet/"
token_file = "/etc/taptill/wallet.token"
[reader]
kind = "sim"
socket = "/run/taptill/tap.sock"
[display]
kind = "console"
"""


def with_key(table: str, key: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(MINIMAL)
    data.setdefault(table, {})[key] = value
    return data


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    text = str(info.value)
    assert "\n" not in text, f"config errors are one line: {text!r}"
    return text


def test_the_documented_keys_load_with_their_values(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(CONTRACT_TOML)
    cfg = load_config(path)
    assert cfg.terminal.state_dir == Path("/var/lib/taptill")
    assert cfg.terminal.products == ("espresso", 7)
    assert (cfg.terminal.description, cfg.terminal.tag) == ("Kaffee", "coffee")
    assert cfg.wallet.base_url == "https://pretix.example/api/v1/organizers/fsr/events/kaffee/wallet"
    assert cfg.wallet.token_file == Path("/etc/taptill/wallet.token")
    assert (cfg.reader.kind, cfg.reader.socket) == ("sim", Path("/run/taptill/tap.sock"))
    assert cfg.display.kind == "console"
    assert cfg.journal_path == Path("/var/lib/taptill/journal.sqlite3")
    assert cfg.source == path


def test_defaults_are_the_safe_ones() -> None:
    cfg = parse_config(copy.deepcopy(MINIMAL))
    assert cfg.wallet.permission == "debit"
    assert cfg.wallet.dedupes is False  # the real server does not deduplicate
    assert cfg.terminal.tap_budget_ms == 800
    assert cfg.terminal.tag is None
    assert cfg.wallet.token_file is None
    assert cfg.terminal.retap_guard_s == 3.0  # one physical tap, one sale (issue 10)


@pytest.mark.parametrize("seconds", [0, 0.5, 60])
def test_retap_guard_takes_zero_to_a_minute(seconds: float) -> None:
    assert parse_config(with_key("terminal", "retap_guard_s", seconds)).terminal.retap_guard_s == seconds


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "config.toml"
    path.parent.mkdir()
    path.write_text(
        '[terminal]\nstate_dir = "state"\nproducts = [1]\ndescription = "d"\n'
        '[wallet]\nbase_url = "http://127.0.0.1:1/w"\ntoken_file = "wallet.token"\n'
    )
    cfg = load_config(path)
    assert cfg.terminal.state_dir == path.parent / "state"
    assert cfg.wallet.token_file == path.parent / "wallet.token"


@pytest.mark.parametrize(
    ("table", "key", "value", "expected"),
    [
        ("terminal", "products", "espresso", "[terminal] products must be a list"),
        ("terminal", "products", [], "[terminal] products is empty"),
        ("terminal", "products", [""], "[terminal] products has an empty product id"),
        ("terminal", "products", [True], "[terminal] products has True"),
        ("terminal", "products", [1.5], "[terminal] products has 1.5"),
        ("terminal", "description", 5, "[terminal] description must be a string"),
        ("terminal", "description", "", "[terminal] description is empty"),
        ("terminal", "tag", "", "[terminal] tag is empty"),
        ("terminal", "tap_budget_ms", 50, "[terminal] tap_budget_ms is 50; expected at least 100"),
        ("terminal", "tap_budget_ms", "800", "[terminal] tap_budget_ms must be a whole number"),
        ("terminal", "tap_budget_ms", True, "[terminal] tap_budget_ms must be a whole number"),
        ("terminal", "mode", "tab", "[terminal] mode is 'tab'; expected one of 'tap' | 'select' | 'topup'"),
        ("wallet", "base_url", "pretix.example", "[wallet] base_url is 'pretix.example'; expected an http"),
        ("wallet", "permission", "root", "[wallet] permission is 'root'; expected one of"),
        ("wallet", "dedupes", "yes", "[wallet] dedupes must be true or false"),
        ("wallet", "timeout_s", 0, "[wallet] timeout_s is 0; expected at least 0.1"),
        ("wallet", "timeout_s", float("nan"), "[wallet] timeout_s"),
        ("wallet", "timeout_s", float("inf"), "[wallet] timeout_s"),
        ("terminal", "screen_hold_s", float("nan"), "[terminal] screen_hold_s"),
        ("terminal", "screen_hold_s", 600, "[terminal] screen_hold_s is 600; expected at most 60.0"),
        ("terminal", "retap_guard_s", -1, "[terminal] retap_guard_s is -1; expected at least 0.0"),
        ("terminal", "retap_guard_s", 61, "[terminal] retap_guard_s is 61; expected at most 60.0"),
        ("terminal", "retap_guard_s", "3", "[terminal] retap_guard_s must be a number, got '3'"),
        ("terminal", "retap_guard_s", True, "[terminal] retap_guard_s must be a number"),
        ("reader", "poll_interval_s", 10, "[reader] poll_interval_s is 10; expected at most 5.0"),
        ("offline", "max_per_card_cents", -1, "[offline] max_per_card_cents is -1; expected at least 0"),
        ("offline", "mode", "maybe", "[offline] mode is 'maybe'"),
        ("reader", "kind", "usb", "[reader] kind is 'usb'; expected one of 'sim' | 'pcsc' | 'nfcpy'"),
        ("display", "kind", "lcd", "[display] kind is 'lcd'"),
        ("display", "rotate", True, "[display] rotate"),
        ("display", "height", 64.0, "[display] height"),
        ("display", "i2c_address", 0x78, "[display] i2c_address is 120; expected at most 119"),
        ("gpio", "relay_pin", 54, "[gpio] relay_pin is 54; expected at most 53"),
        ("gpio", "buttons", {"next": "GPIO5"}, "[gpio.buttons] next must be a whole number"),
    ],
)
def test_every_mistake_is_one_line_naming_the_key(table: str, key: str, value: object, expected: str) -> None:
    assert error_of(with_key(table, key, value)).startswith(expected)


def test_missing_required_keys_are_named() -> None:
    data = copy.deepcopy(MINIMAL)
    del data["terminal"]["description"]
    assert error_of(data) == "[terminal] description is missing; it is required"
    data = copy.deepcopy(MINIMAL)
    del data["wallet"]
    assert error_of(data) == "[wallet] base_url is missing; it is required"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (with_key("terminal", "descripton", "x"), "[terminal] has unknown key 'descripton'; known keys are:"),
        (with_key("wallet", "token", "s3cr3t"), "[wallet] has unknown key 'token'"),
        (with_key("gpio", "relay", 5), "[gpio] has unknown key 'relay'"),
        ({**copy.deepcopy(MINIMAL), "walet": {}}, "the config has unknown table [walet]"),
        ({**copy.deepcopy(MINIMAL), "reader": "sim"}, "[reader] must be a table, got str"),
    ],
)
def test_unknown_keys_and_tables_are_refused(data: dict[str, Any], expected: str) -> None:
    assert error_of(data).startswith(expected)


def test_a_secret_value_in_a_wrong_key_is_not_repeated_back() -> None:
    # A token pasted into the config by mistake must not end up in the error log line.
    text = error_of(with_key("wallet", "token", "s3cr3t-api-token"))
    assert "s3cr3t" not in text


def test_keys_with_line_breaks_still_give_one_line() -> None:
    assert error_of(with_key("terminal", "a\nb", 1)).startswith("[terminal] has unknown key")
    data = copy.deepcopy(MINIMAL)
    data["gpio"] = {"buttons": {"x\ny": "5"}}
    error_of(data)
    data = copy.deepcopy(MINIMAL)
    data["new\ntable"] = {}
    error_of(data)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist; pass --config PATH"),
        (b"[terminal\n", "is not valid TOML"),
        (b"\xff\xfe[terminal]", "is not UTF-8 text"),
    ],
)
def test_unreadable_files_are_one_line(tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "config.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert expected in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_a_directory_as_config_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path)
