"""Parses the ``[ready2order]`` table of the config (the keys are a contract; unknown keys are refused).

``open_day`` defaults to false: opening a daily report is a fiscal step the venue takes on its own POS
(its staff open and close the day), so by default the mirror waits while the day is closed, loses nothing
and says so in ``taptill status`` and ``doctor``; ``open_day = true`` lets the terminal open it, as
integrations that bill unattended do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from terminal.config_section import ConfigError, Section
from terminal.model import ProductId
from terminal.net.transport import cleartext_host, insecure_url_problem

DEFAULT_BASE_URL = "https://api.ready2order.com/v1"
ACCOUNT_LIMIT_PER_MIN = 60  # the API's limit per IP address, shared by every terminal at the venue
EMULATOR_LIMIT_PER_MIN = 100_000  # an emulator on this machine may be driven faster (tests, bench)


@dataclass(frozen=True)
class ProductMapping:
    """The ready2order product a wallet product is billed as; ``name`` overrides the wallet's name."""

    product_id: int
    vat_id: int
    name: str | None = None


@dataclass(frozen=True)
class Ready2OrderConfig:
    account_token_file: Path | None  # read as credentials.READY2ORDER_TOKEN
    payment_method_id: int
    user_id: int
    base_url: str = DEFAULT_BASE_URL
    training: bool = False  # invoice_testMode: the invoices are training records, not fiscal ones
    requests_per_minute: int = 20  # this terminal's share of the account's 60 a minute
    open_day: bool = False
    topup_payment_method_id: int | None = None  # how a top-up's cash is billed (default: payment_method_id)
    timeout_s: float = 10.0  # the overall deadline of one request
    products: Mapping[str, ProductMapping] = field(default_factory=dict)  # str(wallet product id) → …
    allow_insecure: bool = False

    def mapping_for(self, product_id: ProductId) -> ProductMapping | None:
        return self.products.get(str(product_id))


def parse_ready2order(section: Section, base_dir: Path) -> Ready2OrderConfig | None:
    """Validate ``[ready2order]``; None when the table is absent or empty (no mirror)."""
    if not section.keys():
        section.finish()
        return None
    token_file = section.opt_path("account_token_file")
    if token_file is not None and not token_file.is_absolute():
        token_file = base_dir / token_file
    base_url = section.url("base_url", DEFAULT_BASE_URL)
    allow_insecure = section.flag("allow_insecure", False)
    problem = insecure_url_problem(section.name, base_url, "the account token")
    if problem is not None and not allow_insecure:
        raise ConfigError(problem)
    payment = section.integer("payment_method_id", min=1)
    cfg = Ready2OrderConfig(
        account_token_file=token_file,
        payment_method_id=payment,
        user_id=section.integer("user_id", min=1),
        base_url=base_url,
        training=section.flag("training", False),
        requests_per_minute=_rate(section, base_url),
        open_day=section.flag("open_day", False),
        topup_payment_method_id=_opt_id(section, "topup_payment_method_id"),
        timeout_s=section.number("timeout_s", 10.0, min=0.5, max=120.0),
        products=_products(section.table("products")),
        allow_insecure=allow_insecure,
    )
    section.finish()
    return cfg


def _rate(section: Section, base_url: str) -> int:
    on_this_machine = base_url.startswith("http://") and cleartext_host(base_url) is None
    top = EMULATOR_LIMIT_PER_MIN if on_this_machine else ACCOUNT_LIMIT_PER_MIN
    rate = section.integer("requests_per_minute", 20, min=1)
    if rate > top:
        raise ConfigError(
            f"[{section.name}] requests_per_minute is {rate}; ready2order allows {ACCOUNT_LIMIT_PER_MIN} a "
            "minute per IP address, shared by every terminal at the venue: give this terminal its share "
            "(e.g. 20)"
        )
    return rate


def _opt_id(section: Section, key: str) -> int | None:
    return section.integer(key, min=1) if section.has(key) else None


def _products(table: Section) -> dict[str, ProductMapping]:
    products: dict[str, ProductMapping] = {}
    for wallet_id in table.keys():  # noqa: SIM118 - a Section, not a dict
        entry = table.table(wallet_id)
        if not entry.has("product_id") or not entry.has("vat_id"):
            raise ConfigError(
                f"[{entry.name}] needs product_id and vat_id, e.g. {{ product_id = 111, vat_id = 2 }} "
                "(taptill-provision --ready2order lists them)"
            )
        products[wallet_id] = ProductMapping(
            product_id=entry.integer("product_id", min=1),
            vat_id=entry.integer("vat_id", min=1),
            name=entry.opt_str("name"),
        )
        entry.finish()
    table.finish()
    return products
