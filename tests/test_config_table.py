"""The [table] config of table mode: the tables (a list, a range or one fixed table), the denominations,
ApplyPayment's switch, and one line for each mistake."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from terminal.config import ConfigError, parse_config

TABLE: dict[str, Any] = {
    "terminal": {"products": [], "description": "Restaurant", "mode": "table"},
    "wallet": {"base_url": "https://pretix.example/api/v1/organizers/o/events/e/wallet"},
    "brink": {"url": "https://x.parpos.com/Ordering.svc"},
    "table": {
        "tables": [1, 2, 5],
        "denominations": {"1000": "eur10", "100": "eur1", "10": "ct10", "1": "ct1"},
    },
}


def config(**table: object) -> dict[str, Any]:
    data = copy.deepcopy(TABLE)
    data["table"].update(table)
    for key, value in list(data["table"].items()):
        if value is None:
            del data["table"][key]
    return data


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    text = str(info.value)
    assert "\n" not in text, f"config errors are one line: {text!r}"
    return text


def test_a_list_of_tables_and_the_denominations_load() -> None:
    cfg = parse_config(config())
    assert cfg.terminal.mode == "table"
    assert cfg.table.tables == (1, 2, 5) and cfg.table.table_id is None
    assert cfg.table.denominations == {1000: "eur10", 100: "eur1", 10: "ct10", 1: "ct1"}
    assert (cfg.table.apply_payment, cfg.table.tender_id, cfg.table.bill_refresh_s) == (False, None, 30.0)


def test_a_range_of_tables_and_a_fixed_table() -> None:
    assert parse_config(config(tables=None, table_range=[1, 40])).table.tables == tuple(range(1, 41))
    fixed = parse_config(config(tables=None, table_id=12)).table
    assert (fixed.table_id, fixed.tables) == (12, ())


def test_apply_payment_is_kept_for_the_pos_with_its_tender_and_the_terminals_name() -> None:
    cfg = parse_config(config(apply_payment=True, tender_id=7, terminal_id="bar1"))
    assert (cfg.table.apply_payment, cfg.table.tender_id, cfg.table.terminal_id) == (True, 7, "bar1")


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ({"tables": None}, "[table] has no tables; set tables = [1, 2, 5], table_range"),
        ({"tables": [1, 1]}, "lists a table twice"),
        ({"tables": [0]}, "table ids are whole numbers from 1"),
        ({"tables": ["A1"]}, "[table] tables has 'A1'"),
        ({"table_range": [1, 40]}, "both tables and table_range"),
        ({"tables": None, "table_range": [40, 1]}, "[table] table_range must be [first, last]"),
        ({"tables": None, "table_range": [1, 5000]}, "spans 5000 tables"),
        ({"table_id": 12}, "table_id and a list of tables"),
        ({"denominations": {}}, "[table] denominations is empty"),
        ({"denominations": {"ten": "eur10"}}, "keys are amounts in cents"),
        ({"denominations": {"100": ""}}, "must be a wallet product id"),
        ({"denominations": {"100": "eur1", "200": "eur1"}}, "maps two amounts to product 'eur1'"),
        ({"apply_payment": True, "terminal_id": "bar1"}, "apply_payment = true needs tender_id"),
        ({"apply_payment": True, "tender_id": 7}, "apply_payment = true needs terminal_id"),
        ({"terminal_id": "Bar-1"}, "[table] terminal_id 'Bar-1' must be 1-8 lower-case letters and digits"),
        ({"terminal_id": "2"}, "beginning with a letter"),
        ({"bill_refresh_s": 1}, "[table] bill_refresh_s is 1; expected at least 5.0"),
        ({"tabels": [1]}, "[table] has unknown key 'tabels'"),
    ],
)
def test_each_mistake_is_refused_in_one_line(table: dict[str, object], said: str) -> None:
    assert said in error_of(config(**table))


def test_table_mode_needs_pos_access_and_gives_no_goods() -> None:
    data = config()
    del data["brink"]
    assert "add a [brink] table" in error_of(data)
    data = config()
    data["gpio"] = {"relay_pin": 17, "relays": {"eur1": 16}}
    assert "a table terminal gives no goods" in error_of(data)


def test_staff_buttons_must_be_wired_unless_the_terminal_is_at_one_table() -> None:
    data = config()
    data["gpio"] = {"enabled": True, "buttons": {"next": 5, "prev": 6}}
    assert "does not wire 'ok': add ok = PIN" in error_of(data)
    data = config(tables=None, table_id=3)
    data["gpio"] = {"enabled": True}
    assert parse_config(data).table.table_id == 3
