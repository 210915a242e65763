"""parse_yourbarmate: the issue's [yourbarmate] table as written, its defaults, and one-line refusals."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from terminal.config import parse_config
from terminal.config_section import ConfigError, Section
from terminal.yourbarmate.config import StockProduct, YourbarmateConfig, parse_yourbarmate

EXAMPLE = """
[yourbarmate]
listen = "127.0.0.1:8470"        # put a reverse proxy or tunnel with TLS in front to reach it from outside
path = "/hooks/yourbarmate"
username = "ybm"                 # HTTP Basic, as yourbarmate's webhook settings offer
password_file = "/etc/taptill/yourbarmate.password"
[yourbarmate.products]           # yourbarmate product id → wallet product and serving
"2" = { product = "gin", serving_ml = 40 }
"17" = { product = "helles", serving_ml = 500 }
"""


def parse(text: str) -> YourbarmateConfig | None:
    data = tomllib.loads(text)
    return parse_yourbarmate(Section("yourbarmate", data.get("yourbarmate")), Path("/etc/taptill"))


def test_the_issue_example_parses_as_written_with_its_defaults() -> None:
    cfg = parse(EXAMPLE)
    assert cfg is not None
    assert (cfg.host, cfg.port, cfg.path, cfg.username) == ("127.0.0.1", 8470, "/hooks/yourbarmate", "ybm")
    assert cfg.password_file == Path("/etc/taptill/yourbarmate.password")
    assert (cfg.stop_when_empty, cfg.low_servings) == (True, 10)
    assert cfg.products == {"2": StockProduct("gin", 40, "ml"), "17": StockProduct("helles", 500, "ml")}


def test_no_table_is_no_receiver() -> None:
    assert parse("") is None


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ('listen = "8470"', "expected HOST:PORT"),
        ('listen = "127.0.0.1:99999"', "expected HOST:PORT"),
        ('path = "hooks"', "expected a URL path"),
        ("low_servings = -1", "expected at least 0"),
        ('"3" = { product = "rum" }', "exactly one of serving_ml, serving_g or serving"),
        ('"3" = { product = "rum", serving_ml = 40, serving_g = 40 }', "exactly one of"),
        ('"3" = { serving_ml = 40 }', "needs product"),
        ('"3" = { product = "gin", serving_ml = 20 }', "another serving"),
        ('"3" = { product = "rum", serving_ml = 0 }', "expected at least 1"),
        ('"3" = { product = "rum", serving_ml = 4, glass = 1 }', "unknown key 'glass'"),
    ],
)
def test_a_wrong_key_is_refused_in_one_line(extra: str, said: str) -> None:
    text = EXAMPLE
    if extra.startswith('"3"'):
        text += extra + "\n"
    else:
        text = text.replace("[yourbarmate]\n", f"[yourbarmate]\n{extra}\n")
        text = text.replace('listen = "127.0.0.1:8470"', "#") if extra.startswith("listen") else text
        text = text.replace('path = "/hooks/yourbarmate"', "#") if extra.startswith("path") else text
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_a_partybroker_ladder_step_is_refused_as_a_stock_product_the_drink_poured_is_named() -> None:
    data: dict[str, Any] = {
        "terminal": {"state_dir": "/var/lib/taptill", "products": ["beer"], "description": "Bar"},
        "wallet": {"base_url": "https://pretix.example/api/v1/organizers/fsr/events/bar/wallet"},
        "partybroker": {
            "base_url": "https://partybroker.example",
            "party_id": "1234",
            "username": "bar",
            "charge": "ladder",
            "drinks": {"beer": {"id": 145, "ladder": ["beer_s", "beer_m"]}},
        },
        "yourbarmate": {"products": {"17": {"product": "beer_m", "serving_ml": 500}}},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value) == (
        "[yourbarmate.products] \"17\" names 'beer_m', a [partybroker] ladder step: stock counts the drink "
        "poured, so name 'beer' instead"
    )
    data["yourbarmate"]["products"]["17"]["product"] = "beer"
    cfg = parse_config(data)
    assert cfg.yourbarmate is not None and cfg.yourbarmate.products["17"].product == "beer"
