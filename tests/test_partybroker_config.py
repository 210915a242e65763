"""parse_partybroker: the [partybroker] keys are a contract; defaults, mappings, ladders and refusals."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from terminal.config_section import ConfigError, Section
from terminal.partybroker.config import PartybrokerConfig, parse_partybroker
from terminal.partybroker.outcomes import DrinkRef

pytestmark = pytest.mark.partybroker

BASE = """
[partybroker]
base_url = "https://app.partybroker.net:3700/api/"
party_id = "1234"
username = "pos"
password_file = "partybroker.password"
"""


def parse(text: str) -> PartybrokerConfig | None:
    data = tomllib.loads(text)
    return parse_partybroker(Section("partybroker", data.get("partybroker")), Path("/etc/taptill"))


def test_the_documented_example() -> None:
    cfg = parse(
        BASE
        + """price_interval_s = 30
[partybroker.drinks]
espresso = { id = 145 }
cappuccino = { external_id = "POS_222" }
101 = { external_id = 345678 }
"""
    )
    assert cfg is not None
    assert cfg.base_url == "https://app.partybroker.net:3700/api"
    assert cfg.party_id == "1234" and cfg.username == "pos"
    assert cfg.password_file == Path("/etc/taptill/partybroker.password")
    assert cfg.price_interval_s == 30.0 and cfg.charge == "wallet"
    assert cfg.mapping_for("espresso").drink == DrinkRef(id=145)  # type: ignore[union-attr]
    assert cfg.mapping_for("cappuccino").drink == DrinkRef(external_id="POS_222")  # type: ignore[union-attr]
    assert cfg.mapping_for(101).drink == DrinkRef(external_id="345678")  # type: ignore[union-attr]
    assert cfg.mapping_for("water") is None


def test_defaults_and_an_integer_party_id() -> None:
    cfg = parse(BASE.replace('"1234"', "1234"))
    assert cfg is not None and cfg.party_id == "1234"
    assert cfg.price_interval_s == 60.0 and cfg.charge == "wallet" and dict(cfg.drinks) == {}


@pytest.mark.parametrize("text", ["", "[partybroker]\n"])
def test_absent_or_empty_table_means_no_partybroker(text: str) -> None:
    assert parse(text) is None


def test_ladder_mode_lists_wallet_products_per_drink() -> None:
    cfg = parse(
        BASE
        + """charge = "ladder"
[partybroker.drinks]
beer = { id = 145, ladder = [101, 102, "103"] }
"""
    )
    assert cfg is not None and cfg.charge == "ladder"
    assert cfg.drinks["beer"].ladder == (101, 102, "103")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("colour = 1\n", "unknown key 'colour'"),
        ('charge = "market"\n', "charge"),
        ("price_interval_s = 0\n", "price_interval_s"),
        ('[partybroker.drinks]\nx = { id = 1, external_id = "a" }\n', "exactly one of id"),
        ("[partybroker.drinks]\nx = { }\n", "exactly one of id"),
        ('[partybroker.drinks]\nx = { id = "145" }\n', "id must be a whole number"),
        ("[partybroker.drinks]\nx = { id = 1, size = 2 }\n", "unknown key 'size'"),
        ("[partybroker.drinks]\nx = 145\n", "must be a table"),
        ("[partybroker.drinks]\nx = { id = 1, ladder = [1] }\n", "only used with"),
        ('charge = "ladder"\n[partybroker.drinks]\nx = { id = 1 }\n', "ladder is missing"),
        ('charge = "ladder"\n[partybroker.drinks]\nx = { id = 1, ladder = [] }\n', "ladder is empty"),
        ('charge = "ladder"\n', "needs mapped products"),
    ],
)
def test_mistakes_are_one_clear_line(extra: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE + extra)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key", ["base_url", "party_id", "username"])
def test_required_keys(key: str) -> None:
    text = "\n".join(line for line in BASE.splitlines() if not line.startswith(key))
    with pytest.raises(ConfigError, match=key):
        parse(text)


def test_base_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        parse(BASE.replace("https://app", "ftp://app"))
