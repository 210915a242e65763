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
    assert cfg.terminal.rearm_absent_s == 1.0  # a flickering card pays once


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
        ("terminal", "rearm_absent_s", -1, "[terminal] rearm_absent_s is -1; expected at least 0.0"),
        ("terminal", "rearm_absent_s", 61, "[terminal] rearm_absent_s is 61; expected at most 60.0"),
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
        ("gpio", "min_press_ms", -1, "[gpio] min_press_ms is -1; expected at least 0"),
        ("gpio", "min_press_ms", 1001, "[gpio] min_press_ms is 1001; expected at most 1000"),
        ("gpio", "min_press_ms", 30.5, "[gpio] min_press_ms must be a whole number"),
        ("gpio", "relays", {"espresso": 54}, "[gpio.relays] espresso is 54; expected at most 53"),
        ("gpio", "relays", {"espresso": "GPIO17"}, "[gpio.relays] espresso must be a whole number"),
        ("gpio", "relays", 17, "[gpio.relays] must be a table"),
        ("terminal", "currency", "XYZ1", "[terminal] currency is 'XYZ1'; expected an ISO 4217 code of three"),
        ("terminal", "currency", "€", "[terminal] currency is '€'; expected an ISO 4217 code"),
        ("terminal", "currency", "EU", "[terminal] currency is 'EU'; expected an ISO 4217 code"),
    ],
)
def test_every_mistake_is_one_line_naming_the_key(table: str, key: str, value: object, expected: str) -> None:
    assert error_of(with_key(table, key, value)).startswith(expected)


def test_a_currency_is_three_letters_in_capitals() -> None:
    assert parse_config(with_key("terminal", "currency", "chf")).terminal.currency == "CHF"


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


# --- [gpio]: buttons that can be pressed, a relay per product --------------------------------------


def select_mode(**gpio: object) -> dict[str, Any]:
    data = copy.deepcopy(MINIMAL)
    data["terminal"].update(mode="select", products=[])
    data["select"] = {"buttons": {"b1": "espresso", "b2": 7}, "cancel_button": "cancel"}
    if gpio:
        data["gpio"] = gpio
    return data


def test_min_press_and_relays_load() -> None:
    assert parse_config(copy.deepcopy(MINIMAL)).gpio.min_press_ms == 30
    cfg = parse_config(select_mode(relay_pin=17, min_press_ms=0, relays={"espresso": 20, "7": 21}))
    assert (cfg.gpio.min_press_ms, cfg.gpio.relays) == (0, {"espresso": 20, "7": 21})
    assert [cfg.gpio.relay_for(p) for p in ("espresso", 7, "unmapped")] == [20, 21, 17]
    # without relays, every product pulses the one relay, as before
    single = parse_config(with_key("gpio", "relay_pin", 17)).gpio
    assert single.relays == {} and single.relay_for("espresso") == 17


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            select_mode(relays={"latte": 20}, relay_pin=17),
            "[gpio] relays names product 'latte', which this terminal does not sell; "
            "the products in [select] buttons are: espresso, 7",
        ),
        (
            with_key("gpio", "relays", {"cappuccino": 20}),
            "[gpio] relays names product 'cappuccino', which this terminal does not sell; "
            "the products in [terminal] products are: espresso",
        ),
        (
            select_mode(relays={"espresso": 20}),
            "[gpio] relays has no relay for product '7' and there is no relay_pin for the others; "
            "add 7 = PIN to [gpio.relays] or set relay_pin",
        ),
        (
            select_mode(relays={"espresso": 5}, relay_pin=17, buttons={"b1": 5}),
            "[gpio] buttons.b1 uses GPIO5, already used by relays.espresso; give each its own pin",
        ),
        (
            with_key("gpio", "buzzer_pin", 17) | {"gpio": {"relay_pin": 17, "buzzer_pin": 17}},
            "[gpio] buzzer_pin uses GPIO17, already used by relay_pin; give each its own pin",
        ),
        (
            with_key("gpio", "buttons", {"a": 5, "b": 5}),
            "[gpio] buttons.b uses GPIO5, already used by buttons.a; give each its own pin",
        ),
    ],
)
def test_relays_that_cannot_work_are_refused_at_start(data: dict[str, Any], expected: str) -> None:
    assert error_of(data) == expected


def test_products_may_share_a_relay() -> None:
    cfg = parse_config(select_mode(relay_pin=17, relays={"espresso": 17, "7": 17}))
    assert {cfg.gpio.relay_for(p) for p in ("espresso", 7)} == {17}


def test_a_kiosk_has_no_goods_to_relay() -> None:
    data = copy.deepcopy(MINIMAL)
    data["terminal"].update(mode="topup", products=[])
    data["topup"] = {"operators": {"olga": "hmac-sha256:" + "ab" * 32}, "buttons": {"ten": "topup_10"}}
    parse_config(data)
    data["gpio"] = {"relays": {"topup_10": 17}}
    assert error_of(data) == "[gpio] relays is set, but a top-up kiosk gives no goods; remove [gpio.relays]"


def test_select_mode_needs_a_cancel_button_that_can_be_pressed() -> None:
    data = select_mode()
    del data["select"]["cancel_button"]
    assert error_of(data) == (
        "[select] cancel_button is missing; a guest must be able to empty the cart with one press: "
        'add cancel_button = "cancel" and wire that button'
    )
    data = select_mode()
    data["select"]["cancel_button"] = "b1"
    assert error_of(data) == (
        "[select] cancel_button 'b1' is also a product button in [select] buttons; give it a name of its own"
    )
    wired = {"b1": 5, "b2": 6, "cancel": 13}
    parse_config(select_mode(enabled=True, buttons=wired))
    assert error_of(select_mode(enabled=True, buttons={"b1": 5, "b2": 6})) == (
        "[select] cancel_button names button 'cancel', which [gpio.buttons] does not wire to a pin "
        "(wired: b1, b2); add cancel = PIN there"
    )
    assert error_of(select_mode(enabled=True, buttons={"b1": 5, "cancel": 13})).startswith(
        "[select] buttons names button 'b2', which [gpio.buttons] does not wire to a pin"
    )
    parse_config(select_mode(enabled=False, buttons={}))  # without GPIO, `taptill press` presses them
