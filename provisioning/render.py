"""Renders the files provisioning installs: config.toml, the unit and its drop-in, the sysusers entry."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import tomlkit

from terminal.model import printable
from terminal.partybroker.outcomes import Drink
from terminal.service.credentials import (
    CONFIG_DIR,
    PARTYBROKER_PASSWORD,
    READY2ORDER_TOKEN,
    SERVICE_SECRETS,
    WALLET_TOKEN,
    ServiceSecret,
)
from terminal.service.unit_file import DROPIN_DIR

CONFIG_PATH = CONFIG_DIR / "config.toml"
TOKEN_PATH = WALLET_TOKEN.path
PARTYBROKER_PASSWORD_PATH = PARTYBROKER_PASSWORD.path
READY2ORDER_TOKEN_PATH = READY2ORDER_TOKEN.path
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
# What provisioning wrote, as a digest: a re-run tells its own file from one edited by hand.
DIGEST_MARK = "# taptill-provision sha256 of what follows: "


@dataclass(frozen=True)
class ProductMapping:
    """A wallet product's ready2order product: its id, its VAT rate's id and its name (for the reader)."""

    wallet_product: str | int
    product_id: int
    vat_id: int
    name: str


@dataclass(frozen=True)
class Ready2OrderChoices:
    """The [ready2order] table, checked against the account (names for the file's comments only)."""

    base_url: str
    payment_method_id: int
    payment_method_name: str
    user_id: int
    training: bool
    requests_per_minute: int
    products: Sequence[ProductMapping] = ()


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
    ready2order: Ready2OrderChoices | None = None


def config_toml(c: ConfigChoices, kept: Mapping[str, Mapping[str, object]] = {}) -> str:
    """The config for ``c``, followed by the tables in ``kept`` (by name, in order) with their values.

    Written by a TOML writer (tomlkit), never by string formatting: a value from a server (a Partybroker
    drink title, a product id) or from the answers is always one escaped TOML string, so a newline in it
    cannot open a table of its own (``[offline]`` with limits of its choosing)."""
    doc = tomlkit.document()
    terminal = tomlkit.table()
    terminal.add("state_dir", c.state_dir)
    terminal.add("products", list(c.products))
    terminal.add("description", c.description)
    if c.tag is not None:
        terminal.add("tag", c.tag)
    if c.mode != "tap":
        terminal.add("mode", c.mode)
    doc.add("terminal", terminal)
    wallet = tomlkit.table()
    wallet.add("base_url", c.wallet_url)
    wallet.add("token_file", str(TOKEN_PATH))
    doc.add("wallet", wallet)
    reader = tomlkit.table()
    reader.add("kind", c.reader_kind)
    reader.add("socket", c.sim_socket)
    if c.reader_name is not None:
        reader.add("name", c.reader_name)
    if c.reader_device is not None:
        reader.add("device", c.reader_device)
    doc.add("reader", reader)
    display = tomlkit.table()
    display.add("kind", c.display_kind)
    if c.oled_port is not None and c.oled_address is not None:
        display.add("i2c_port", c.oled_port)
        display.add("i2c_address", tomlkit.integer(f"0x{c.oled_address:02X}"))
    doc.add("display", display)
    if c.partybroker_url is not None:
        partybroker = tomlkit.table()
        partybroker.add("base_url", c.partybroker_url)
        partybroker.add("party_id", c.party_id or "")
        partybroker.add("username", c.partybroker_user or "")
        partybroker.add("password_file", str(PARTYBROKER_PASSWORD_PATH))
        if c.drink_mapping:
            drinks = tomlkit.table(is_super_table=True)
            for product, drink in c.drink_mapping:
                entry = tomlkit.table()
                if drink.external_id is not None:
                    entry.add("external_id", drink.external_id)
                else:
                    entry.add("id", drink.id)
                entry.add("title", drink.title)  # for the reader of the file; the terminal ignores it
                drinks.add(str(product), entry)
            partybroker.add("drinks", drinks)
        doc.add("partybroker", partybroker)
    if c.ready2order is not None:
        doc.add("ready2order", ready2order_table(c.ready2order))
    for name, table in kept.items():
        doc.add(name, tomlkit.item(dict(table)))
    for secret in SERVICE_SECRETS:
        _say_where_the_service_reads(doc, secret)
    body = tomlkit.dumps(doc)
    return f"{HEADER}{DIGEST_MARK}{hashlib.sha256(body.encode()).hexdigest()}\n\n{body}"


def _say_where_the_service_reads(doc: tomlkit.TOMLDocument, secret: ServiceSecret) -> None:
    """The comment beside a secret's file in the config: the service reads not the file but its copy."""
    table = doc.get(secret.table)
    if isinstance(table, MutableMapping) and isinstance(value := table.get(secret.key), str):
        table[secret.key] = tomlkit.item(value).comment(
            f"root's, 0600: the service reads it as $CREDENTIALS_DIRECTORY/{secret.credential}"
        )


def ready2order_table(r: Ready2OrderChoices) -> tomlkit.items.Table:
    """``[ready2order]`` as issue 13 names its keys; ready2order's names go into comments, one line each."""
    table = tomlkit.table()
    table.add(
        tomlkit.comment("rewritten by taptill-provision --ready2order; a run without it keeps it as it is")
    )
    table.add("base_url", r.base_url)
    table.add("account_token_file", str(READY2ORDER_TOKEN_PATH))
    table.add(
        "payment_method_id", tomlkit.item(r.payment_method_id).comment(printable(r.payment_method_name, 100))
    )
    table.add("user_id", r.user_id)
    table.add(
        "training",
        tomlkit.item(r.training).comment("invoice_testMode: sales go to training records, not fiscal ones"),
    )
    table.add(
        "requests_per_minute",
        tomlkit.item(r.requests_per_minute).comment("this terminal's share of the account's 60/min"),
    )
    products = tomlkit.table()
    for m in r.products:
        entry = tomlkit.inline_table()
        entry.add("product_id", m.product_id)
        entry.add("vat_id", m.vat_id)
        products.add(str(m.wallet_product), tomlkit.item(entry).comment(printable(m.name, 100)))
    table.add("products", products)
    return table


def hand_edited(text: str) -> bool:
    """Whether a config on disk is not exactly what provisioning wrote: its digest line is missing or
    no longer matches what follows it (a re-run would replace those edits, so it keeps a backup)."""
    head, mark, rest = text.partition(DIGEST_MARK)
    digest, _, body = rest.partition("\n\n")
    return not mark or head != HEADER or hashlib.sha256(body.encode()).hexdigest() != digest


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


def dropin_path(secret: ServiceSecret) -> Path:
    """The unit's drop-in that passes ``secret``: one per config table (partybroker.conf, topup.conf)."""
    return DROPIN_DIR / f"{secret.table}.conf"


def credential_dropin(secrets: Sequence[tuple[ServiceSecret, Path]]) -> str:
    """A drop-in passing each root-only file to the service as its credential (the secrets of one config
    table, as ``[brink]`` has two): systemd reads them as root at each start, and a missing file stops the
    unit from starting."""
    lines = []
    for secret, path in secrets:
        lines += [
            f"# Written by taptill-provision: {secret.setting} is {path}, which only root reads;\n",
            f"# the service (user taptill) reads it as $CREDENTIALS_DIRECTORY/{secret.credential}.\n",
        ]
    lines.append("[Service]\n")
    lines += [f"LoadCredential={secret.credential}:{path}\n" for secret, path in secrets]
    return "".join(lines)


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
