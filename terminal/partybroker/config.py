"""Parses the ``[partybroker]`` table of the config (the keys are a contract; unknown keys are refused)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from terminal.config_section import ConfigError, Section
from terminal.model import ProductId
from terminal.net.transport import insecure_url_problem
from terminal.partybroker.outcomes import DrinkRef

ChargeMode = Literal["wallet", "ladder"]


@dataclass(frozen=True)
class DrinkMapping:
    """One wallet product's Partybroker drink, and (``charge = "ladder"``) its fixed-price wallet steps."""

    drink: DrinkRef
    ladder: tuple[ProductId, ...] = ()


@dataclass(frozen=True)
class PartybrokerConfig:
    base_url: str
    party_id: str
    username: str
    password_file: Path | None  # terminal.service.credentials.PARTYBROKER_PASSWORD
    price_interval_s: float = 60.0
    charge: ChargeMode = "wallet"
    drinks: Mapping[str, DrinkMapping] = field(default_factory=dict)  # str(wallet product id) → drink
    allow_insecure: bool = False  # http:// to another machine: the password travels in clear

    def mapping_for(self, product_id: ProductId) -> DrinkMapping | None:
        return self.drinks.get(str(product_id))


def parse_partybroker(section: Section, base_dir: Path) -> PartybrokerConfig | None:
    """Validate ``[partybroker]``; None when the table is absent or empty (Partybroker not used)."""
    if not section.keys():
        section.finish()
        return None
    password_file = section.opt_path("password_file")
    if password_file is not None and not password_file.is_absolute():
        password_file = base_dir / password_file
    charge: ChargeMode = section.choice("charge", ("wallet", "ladder"), "wallet")
    base_url = section.url("base_url")
    allow_insecure = section.flag("allow_insecure", False)
    problem = insecure_url_problem(section.name, base_url, "the Basic-auth password")
    if problem is not None and not allow_insecure:
        raise ConfigError(problem)
    cfg = PartybrokerConfig(
        base_url=base_url,
        party_id=_party_id(section),
        username=section.string("username"),
        password_file=password_file,
        price_interval_s=section.number("price_interval_s", 60.0, min=0.05),
        charge=charge,
        drinks=_drinks(section.table("drinks"), charge),
        allow_insecure=allow_insecure,
    )
    section.finish()
    return cfg


def _party_id(section: Section) -> str:
    try:
        return section.string("party_id")
    except ConfigError:
        pass
    try:
        return str(section.integer("party_id", min=0))
    except ConfigError:
        raise ConfigError(
            f'[{section.name}] party_id must be the party\'s id as shown next to its title, e.g. "1234"'
        ) from None


def _drinks(table: Section, charge: ChargeMode) -> dict[str, DrinkMapping]:
    drinks: dict[str, DrinkMapping] = {}
    for product in table.keys():  # noqa: SIM118 - a Section, not a dict
        drinks[product] = _drink(table.table(product), charge)
    table.finish()
    if charge == "ladder" and not drinks:
        raise ConfigError(f'[{table.name}] is empty; charge = "ladder" needs mapped products with a ladder')
    return drinks


def _drink(s: Section, charge: ChargeMode) -> DrinkMapping:
    has_id, has_external = s.has("id"), s.has("external_id")
    if has_id == has_external:
        raise ConfigError(
            f'[{s.name}] needs exactly one of id = 145 (Partybroker drink id) or external_id = "POS_222"'
        )
    ref = DrinkRef(id=s.integer("id", min=0)) if has_id else DrinkRef(external_id=_external_id(s))
    s.string("title", "", allow_empty=True)  # the drink's name, for the reader of the file only
    ladder: tuple[ProductId, ...] = ()
    if charge == "ladder":
        steps = s.list_of("ladder", (int, str))
        if not steps:
            raise ConfigError(f"[{s.name}] ladder is empty; list the wallet products at fixed prices")
        ladder = tuple(step for step in steps if isinstance(step, int | str))
    elif s.has("ladder"):
        raise ConfigError(f'[{s.name}] ladder is only used with [partybroker] charge = "ladder"; remove it')
    s.finish()
    return DrinkMapping(drink=ref, ladder=ladder)


def _external_id(s: Section) -> str:
    try:
        return s.string("external_id")
    except ConfigError:
        pass
    try:
        return str(s.integer("external_id"))
    except ConfigError:
        raise ConfigError(
            f'[{s.name}] external_id must be the drink\'s externalId from Partybroker, e.g. "POS_222"'
        ) from None
