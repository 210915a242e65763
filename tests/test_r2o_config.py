"""parse_ready2order: the [ready2order] keys are the contract of issue 13; defaults and one-line refusals."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from terminal.config import load_config
from terminal.config_section import ConfigError, Section
from terminal.emulator.wallet import WalletEmulator
from terminal.ready2order.config import ProductMapping, Ready2OrderConfig, parse_ready2order
from tests.terminal_lab import taptill, write_config

pytestmark = pytest.mark.ready2order

EXAMPLE = """
[ready2order]
base_url = "https://api.ready2order.com/v1"
account_token_file = "/etc/taptill/ready2order.token"
payment_method_id = 1234
user_id = 5678
training = false               # invoice_testMode: sales go to training records, not fiscal ones
requests_per_minute = 20       # this terminal's share of the account's 60/min
[ready2order.products]         # wallet product id → ready2order product (id, name, VAT id)
espresso = { product_id = 111, vat_id = 2 }
"""


def parse(text: str) -> Ready2OrderConfig | None:
    data = tomllib.loads(text)
    return parse_ready2order(Section("ready2order", data.get("ready2order")), Path("/etc/taptill"))


def test_the_issue_example_parses_as_written() -> None:
    cfg = parse(EXAMPLE)
    assert cfg is not None
    assert cfg.base_url == "https://api.ready2order.com/v1"
    assert cfg.account_token_file == Path("/etc/taptill/ready2order.token")
    assert (cfg.payment_method_id, cfg.user_id) == (1234, 5678)
    assert cfg.training is False and cfg.requests_per_minute == 20
    assert cfg.mapping_for("espresso") == ProductMapping(111, 2)
    assert cfg.mapping_for("water") is None
    # the defaults this terminal chose: never open the venue's day by itself; top-ups billed like sales
    assert cfg.open_day is False and cfg.topup_payment_method_id is None and cfg.timeout_s == 10.0


def test_optional_keys_and_a_relative_token_file() -> None:
    cfg = parse(
        """
[ready2order]
account_token_file = "r2o.token"
payment_method_id = 3
topup_payment_method_id = 1
user_id = 1
open_day = true
training = true
[ready2order.products]
101 = { product_id = 9, vat_id = 4, name = "Guthaben" }
"""
    )
    assert cfg is not None
    assert cfg.base_url == "https://api.ready2order.com/v1"  # the real API unless told otherwise
    assert cfg.account_token_file == Path("/etc/taptill/r2o.token")
    assert cfg.open_day and cfg.training and cfg.topup_payment_method_id == 1
    assert cfg.mapping_for(101) == ProductMapping(9, 4, "Guthaben")


@pytest.mark.parametrize("text", ["", "[ready2order]\n"])
def test_absent_or_empty_table_means_no_mirror(text: str) -> None:
    assert parse(text) is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("payment_method_id = 1234\n", ""), "[ready2order] payment_method_id is missing"),
        (("user_id = 5678", 'user_id = "5678"'), "[ready2order] user_id must be a whole number"),
        (("requests_per_minute = 20", "requests_per_minute = 61"), "allows 60 a minute per IP address"),
        (("requests_per_minute = 20", "requests_per_minute = 0"), "requests_per_minute is 0"),
        (("training = false", 'training = "no"'), "[ready2order] training must be true or false"),
        (("training = false", "trainig = false"), "[ready2order] has unknown key 'trainig'"),
        ((", vat_id = 2 }", " }"), "[ready2order.products.espresso] needs product_id and vat_id"),
        (("{ product_id = 111, vat_id = 2 }", "111"), "[ready2order.products.espresso] must be a table"),
        (("vat_id = 2 }", "vat_id = 2, vat = 10 }"), "[ready2order.products.espresso] has unknown key 'vat'"),
        (("https://api.ready2order.com/v1", "http://r2o.example/v1"), "use https://"),
        (("https://api.ready2order.com/v1", "ftp://x"), "expected an http:// or https:// URL"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(change: tuple[str, str], words: str) -> None:
    old, new = change
    assert old in EXAMPLE
    with pytest.raises(ConfigError) as err:
        parse(EXAMPLE.replace(old, new, 1))
    message = str(err.value)
    assert words in message, message
    assert "\n" not in message


def test_an_emulator_on_this_machine_may_be_driven_faster() -> None:
    text = EXAMPLE.replace("https://api.ready2order.com/v1", "http://127.0.0.1:8080/v1")
    cfg = parse(text.replace("requests_per_minute = 20", "requests_per_minute = 6000"))
    assert cfg is not None and cfg.requests_per_minute == 6000


def test_the_terminal_config_carries_it_and_the_cli_says_a_mistake_in_one_line(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as wallet:
        config = write_config(tmp_path, wallet, extra=EXAMPLE)
        cfg = load_config(config)
        assert cfg.ready2order is not None and cfg.ready2order.payment_method_id == 1234
        config.write_text(config.read_text().replace(", vat_id = 2 }", " }"))
        said = taptill("status", "--config", str(config), check=False)
    assert said.returncode == 2
    assert said.stderr.startswith("taptill: [ready2order.products.espresso] needs product_id and vat_id")
    assert said.stderr.count("\n") == 1 and "Traceback" not in said.stderr
