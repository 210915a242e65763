"""Renders the files provisioning installs: config.toml, the unit and its drop-in, the sysusers entry."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from terminal.partybroker.config import PASSWORD_CREDENTIAL
from terminal.partybroker.outcomes import Drink

CONFIG_DIR = Path("/etc/taptill")
CONFIG_PATH = CONFIG_DIR / "config.toml"
TOKEN_PATH = CONFIG_DIR / "wallet.token"
PARTYBROKER_PASSWORD_PATH = CONFIG_DIR / "partybroker.password"
UNIT_PATH = Path("/etc/systemd/system/taptill.service")
DROPIN_PATH = Path("/etc/systemd/system/taptill.service.d/partybroker.conf")
WANTS_LINK = Path("/etc/systemd/system/multi-user.target.wants/taptill.service")
SYSUSERS_PATH = Path("/etc/sysusers.d/taptill.conf")


# The config tables provisioning writes from its answers and rewrites whole on every run. Any other table
# ([offline], a [gpio] added by hand, ...) belongs to the person and is carried over as it was, unless the
# answers file gives that table itself.
OWNED_TABLES = ("terminal", "wallet", "reader", "display", "partybroker")
HEADER = (
    "# Written by taptill-provision. Every run rewrites [terminal], [wallet], [reader], [display] and\n"
    "# [partybroker] from its answers; any other table is kept as it is, unless the answers file gives it.\n"
)


def toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def toml_value(value: str | int) -> str:
    return str(value) if isinstance(value, int) else toml_str(value)


@dataclass(frozen=True)
class ConfigChoices:
    """Everything config.toml says, already checked against the servers and the hardware."""

    state_dir: str
    products: Sequence[str | int]
    description: str
    tag: str | None
    mode: str
    wallet_url: str
    reader_kind: str
    reader_name: str | None
    sim_socket: str
    display_kind: str
    oled_port: int | None
    oled_address: int | None
    reader_device: str | None = None
    partybroker_url: str | None = None
    party_id: str | None = None
    partybroker_user: str | None = None
    drink_mapping: Sequence[tuple[str | int, Drink]] = ()


def config_toml(c: ConfigChoices, kept: Mapping[str, Mapping[str, object]] = {}) -> str:
    """The config for ``c``, followed by the tables in ``kept`` (by name, in order) as they are."""
    lines = [
        "[terminal]",
        f"state_dir = {toml_str(c.state_dir)}",
        f"products = [{', '.join(toml_value(p) for p in c.products)}]",
        f"description = {toml_str(c.description)}",
    ]
    if c.tag is not None:
        lines.append(f"tag = {toml_str(c.tag)}")
    if c.mode != "tap":
        lines.append(f"mode = {toml_str(c.mode)}")
    lines += [
        "",
        "[wallet]",
        f"base_url = {toml_str(c.wallet_url)}",
        f"token_file = {toml_str(str(TOKEN_PATH))}  # the service gets it as credential wallet.token",
        "",
        "[reader]",
        f"kind = {toml_str(c.reader_kind)}",
        f"socket = {toml_str(c.sim_socket)}",
    ]
    if c.reader_name is not None:
        lines.append(f"name = {toml_str(c.reader_name)}")
    if c.reader_device is not None:
        lines.append(f"device = {toml_str(c.reader_device)}")
    lines += ["", "[display]", f"kind = {toml_str(c.display_kind)}"]
    if c.oled_port is not None and c.oled_address is not None:
        lines += [f"i2c_port = {c.oled_port}", f"i2c_address = 0x{c.oled_address:02X}"]
    if c.partybroker_url is not None:
        lines += [
            "",
            "[partybroker]",
            f"base_url = {toml_str(c.partybroker_url)}",
            f"party_id = {toml_str(c.party_id or '')}",
            f"username = {toml_str(c.partybroker_user or '')}",
            f"password_file = {toml_str(str(PARTYBROKER_PASSWORD_PATH))}",
        ]
        for product, drink in c.drink_mapping:
            lines += ["", f"[partybroker.drinks.{toml_str(str(product))}]  # {drink.title}"]
            if drink.external_id is not None:
                lines.append(f"external_id = {toml_str(drink.external_id)}")
            else:
                lines.append(f"id = {drink.id}")
    for name, table in kept.items():
        lines += ["", *toml_table(name, table)]
    return HEADER + "\n".join(lines) + "\n"


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_str(key)


def toml_any(value: object) -> str:
    """One TOML value as tomllib gave it (text, number, flag, date, list, inline table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, int | float):
        return repr(value)  # inf and nan are spelt the same in TOML
    if isinstance(value, list):
        return "[" + ", ".join(toml_any(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{toml_key(str(k))} = {toml_any(v)}" for k, v in value.items()) + "}"
    return str(value.isoformat()) if hasattr(value, "isoformat") else toml_str(str(value))


def toml_table(name: str, table: Mapping[str, object]) -> list[str]:
    """``[name]`` with its plain keys, then each sub-table as ``[name.key]``: what tomllib read, written
    back so that tomllib reads the same (comments and layout are not kept)."""
    lines = [f"[{name}]"]
    subtables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    lines += [f"{toml_key(k)} = {toml_any(v)}" for k, v in table.items() if k not in subtables]
    for key, sub in subtables.items():
        lines += ["", *toml_table(f"{name}.{toml_key(key)}", sub)]
    return lines


def unit_text(
    template: str,
    taptill_bin: str,
    python_bin: str,
    groups: Sequence[str],
    config_path: Path = CONFIG_PATH,
) -> str:
    """The shipped unit with ExecStart/ExecStopPost pointing at this installation and exactly ``groups``
    as SupplementaryGroups= (the line is dropped when no device needs a group)."""
    out = []
    for line in template.splitlines():
        if line.startswith("ExecStart="):
            line = f"ExecStart={taptill_bin} run --config {config_path}"
        elif line.startswith("ExecStopPost=") and "provisioning.relay_reset" in line:
            line = f"ExecStopPost=-{python_bin} -m provisioning.relay_reset --config {config_path}"
        elif line.startswith("SupplementaryGroups="):
            if not groups:
                continue
            line = f"SupplementaryGroups={' '.join(groups)}"
        out.append(line)
    return "\n".join(out) + "\n"


def partybroker_dropin() -> str:
    return (
        "# Written by taptill-provision: Partybroker is configured, so the service needs its password.\n"
        "[Service]\n"
        f"LoadCredential={PASSWORD_CREDENTIAL}:{PARTYBROKER_PASSWORD_PATH}\n"
    )


def sysusers_conf(groups: Sequence[str]) -> str:
    """systemd-sysusers creates the service user and any missing device group at boot or on demand.

    The groups are the unit's SupplementaryGroups=: a group that does not exist would stop the unit from
    starting (216/GROUP), so each is declared here; memberships are not (the unit is the one place)."""
    lines = [
        "# Written by taptill-provision: the unprivileged user the taptill service runs as.",
        'u taptill - "taptill NFC terminal" /var/lib/taptill /usr/sbin/nologin',
    ]
    lines += [f"g {group} -" for group in groups]
    return "\n".join(lines) + "\n"


def propose_mapping(
    products: Sequence[tuple[str | int, str]], drinks: Sequence[Drink]
) -> list[tuple[str | int, Drink]]:
    """Product → drink by externalId equal to the product id, else by the same title (case-blind)."""
    mapping: list[tuple[str | int, Drink]] = []
    for product_id, name in products:
        by_id = [d for d in drinks if d.external_id is not None and d.external_id == str(product_id)]
        by_title = [d for d in drinks if d.title.strip().casefold() == name.strip().casefold()]
        match = by_id or by_title
        if len(match) == 1:
            mapping.append((product_id, match[0]))
    return mapping
