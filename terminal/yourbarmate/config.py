"""Parses the ``[yourbarmate]`` table (issue 15): the webhook receiver's address and credentials, and
which yourbarmate product is which wallet product with what serving. Absent or empty: no receiver.

The password is a private file like every other secret (0600, or the systemd credential
``yourbarmate.password``). ``listen`` is plain HTTP: a reverse proxy or tunnel with TLS in front of it
reaches it from outside, so the default stays on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from terminal.config_section import ConfigError, Section
from terminal.yourbarmate.units import Measure

DEFAULT_LISTEN = "127.0.0.1:8470"
DEFAULT_PATH = "/hooks/yourbarmate"
SERVING_KEYS: dict[str, Measure] = {"serving_ml": "ml", "serving_g": "g", "serving": "pieces"}


@dataclass(frozen=True)
class StockProduct:
    """What one yourbarmate product is at this bar: a wallet product and one serving of it."""

    product: str  # the wallet product id, as text
    serving: int  # ml, g or pieces poured or handed out per sale of ``product``
    measure: Measure


@dataclass(frozen=True)
class YourbarmateConfig:
    host: str
    port: int
    path: str = DEFAULT_PATH
    username: str = "ybm"
    password_file: Path | None = None  # read as credentials.YOURBARMATE_PASSWORD
    stop_when_empty: bool = True  # decline a product whose stock is below one serving
    low_servings: int = 10  # fewer servings left than this: the product is "low"
    read_timeout_s: float = 10.0  # the whole body must arrive within this (a dripping sender is cut off)
    products: Mapping[str, StockProduct] = field(default_factory=dict)  # yourbarmate product id -> …

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"

    def by_wallet_product(self) -> dict[str, StockProduct]:
        """Each mapped wallet product once (several yourbarmate products may fill the same one)."""
        return {p.product: p for p in self.products.values()}


def parse_yourbarmate(section: Section, base_dir: Path) -> YourbarmateConfig | None:
    """Validate ``[yourbarmate]``; None when the table is absent or empty (no receiver)."""
    if not section.keys():
        section.finish()
        return None
    host, port = _listen(section)
    path = section.string("path", DEFAULT_PATH)
    if not path.startswith("/") or any(c in path for c in "?# ") or not path.isprintable():
        raise ConfigError(f"[{section.name}] path is {path!r}; expected a URL path like {DEFAULT_PATH!r}")
    password_file = section.opt_path("password_file")
    if password_file is not None and not password_file.is_absolute():
        password_file = base_dir / password_file
    cfg = YourbarmateConfig(
        host=host,
        port=port,
        path=path,
        username=section.string("username", "ybm"),
        password_file=password_file,
        stop_when_empty=section.flag("stop_when_empty", True),
        low_servings=section.integer("low_servings", 10, min=0),
        read_timeout_s=section.number("read_timeout_s", 10.0, min=0.1, max=120.0),
        products=_products(section.table("products")),
    )
    section.finish()
    return cfg


def _listen(section: Section) -> tuple[str, int]:
    text = section.string("listen", DEFAULT_LISTEN)
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"[{section.name}] listen is {text!r}; expected HOST:PORT, e.g. {DEFAULT_LISTEN!r}")
    return host, int(port)


def _products(table: Section) -> dict[str, StockProduct]:
    products: dict[str, StockProduct] = {}
    serving_of: dict[str, tuple[int, Measure]] = {}
    for ybm_id in table.keys():  # noqa: SIM118 - a Section, not a dict
        entry = table.table(ybm_id)
        product = entry.raw("product")
        if isinstance(product, bool) or not isinstance(product, str | int) or product == "":
            raise ConfigError(
                f"[{entry.name}] needs product = the wallet product id, e.g. "
                '{ product = "gin", serving_ml = 40 }'
            )
        given = [key for key in SERVING_KEYS if entry.has(key)]
        if len(given) != 1:
            raise ConfigError(
                f"[{entry.name}] needs exactly one of serving_ml, serving_g or serving (pieces), "
                "e.g. serving_ml = 40"
            )
        serving = entry.integer(given[0], min=1)
        measure = SERVING_KEYS[given[0]]
        entry.finish()
        earlier = serving_of.setdefault(str(product), (serving, measure))
        if earlier != (serving, measure):
            raise ConfigError(
                f"[{entry.name}] gives wallet product {str(product)!r} another serving than an earlier "
                "yourbarmate product does; one wallet product has one serving"
            )
        products[ybm_id] = StockProduct(str(product), serving, measure)
    table.finish()
    return products
