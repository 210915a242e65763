"""README's config reference names every table and key the config parser accepts (so it cannot go stale).

The list of accepted keys is not written down here: it comes from the parser itself, the way a person
meets it. A config with an unknown key is refused with "[table] has unknown key …; known keys are: …",
and one with an unknown table with "known tables are: …". Those lines, for every table (and every
sub-table the parser reads keys from), are the reference the README must cover.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from terminal.config import ConfigError, parse_config

README = Path(__file__).resolve().parent.parent / "README.md"
PROBE = "zz_not_a_key"

# The smallest config the parser accepts, with a [partybroker] and one drink, a [ready2order] with one
# product and a [brink], so their keys are read too.
BASE: dict[str, Any] = {
    "terminal": {"products": ["espresso"], "description": "Kaffee"},
    "wallet": {"base_url": "http://127.0.0.1:9/wallet"},
    "partybroker": {
        "base_url": "http://127.0.0.1:9/api",
        "party_id": "1234",
        "username": "taptill",
        "drinks": {"espresso": {"id": 145}},
    },
    "ready2order": {
        "payment_method_id": 1,
        "user_id": 1,
        "products": {"espresso": {"product_id": 111, "vat_id": 2}},
    },
    "brink": {"url": "http://127.0.0.1:9/Ordering.svc"},
}


def _refusal(data: dict[str, Any]) -> str:
    try:
        parse_config(data)
    except ConfigError as exc:
        return str(exc)
    return ""


def _known_tables() -> list[str]:
    said = _refusal({**copy.deepcopy(BASE), PROBE: {}})
    assert "known tables are:" in said, said
    return re.findall(r"\[([^\]]+)\]", said.split("known tables are:", 1)[1])


def _known_keys(path: tuple[str, ...]) -> list[str] | None:
    """The keys the parser names for the table at ``path``; None when it takes any name there (buttons)."""
    data = copy.deepcopy(BASE)
    table = data
    for part in path:
        if not isinstance(table.get(part), dict):
            table[part] = {}  # a scalar key probed as a table is refused for its type: not a table
        table = table[part]
    table[PROBE] = 1
    said = _refusal(data)
    prefix = f"[{'.'.join(path)}] has unknown key '{PROBE}'; known keys are: "
    if not said.startswith(prefix):
        return None  # accepted, or refused for another reason: its keys are names (buttons, drinks)
    return [k for k in said[len(prefix) :].split(", ") if k != "none"]


def accepted() -> dict[str, list[str]]:
    """Every table the parser reads, by dotted path, with the keys it accepts there."""
    found: dict[str, list[str]] = {}
    todo: list[tuple[str, ...]] = [(t,) for t in _known_tables()]
    while todo:
        path = todo.pop(0)
        keys = _known_keys(path)
        if keys is None:
            # a table of free names: only sub-tables the config already has may have keys of their own
            node: Any = BASE
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict):
                todo += [(*path, name) for name, value in node.items() if isinstance(value, dict)]
            continue
        found[".".join(path)] = keys
        todo += [(*path, key) for key in keys]  # a key may be a sub-table ([gpio.buttons]); probed too
    return {path: keys for path, keys in found.items() if keys or path.count(".") == 0}


def readme_reference(text: str) -> dict[str, set[str]]:
    """Keys shown per table in README's TOML blocks: ``key =`` anywhere on a line (commented-out optional
    keys count), and a ``[table.sub]`` header counts as key ``sub`` of ``[table]``."""
    shown: dict[str, set[str]] = {}
    for block in re.findall(r"```toml\n(.*?)```", text, flags=re.S):
        table = ""
        for line in block.splitlines():
            header = re.match(r"\s*\[([\w.]+)\]", line)
            if header:
                table = header.group(1)
                shown.setdefault(table, set())
                parent, _, leaf = table.rpartition(".")
                if parent:
                    shown.setdefault(parent, set()).add(leaf)
                line = line[header.end() :]
            shown.setdefault(table, set()).update(re.findall(r"(?<![\w.\"])([A-Za-z_]\w*)\s*=", line))
    return shown


def _shown_for(path: str, shown: dict[str, set[str]]) -> set[str]:
    """A table's keys as README shows them: in its own section, or inline in a parent's (a drink's
    ``{ id = 145 }`` sits in ``[partybroker.drinks]``)."""
    keys: set[str] = set()
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        keys |= shown.get(".".join(parts[:n]), set())
    return keys


def test_the_parser_reports_the_tables_and_keys_this_test_reads() -> None:
    """The probe itself works: it finds the tables and keys that are known to exist."""
    found = accepted()
    assert {"terminal", "wallet", "offline", "reader", "display", "gpio", "select", "topup"} <= set(found)
    assert {"screen_hold_s", "currency", "retap_guard_s"} <= set(found["terminal"])
    assert {"relay_pin", "buzzer_pin", "buttons"} <= set(found["gpio"])  # read only when present
    assert {"id", "external_id", "ladder"} <= set(found["partybroker.drinks.espresso"])
    assert {"open_day", "requests_per_minute", "training"} <= set(found["ready2order"])
    assert {"product_id", "vat_id", "name"} <= set(found["ready2order.products.espresso"])


@pytest.mark.parametrize("path", sorted(accepted()))
def test_readme_documents_every_key(path: str) -> None:
    shown = readme_reference(README.read_text(encoding="utf-8"))
    top = path.split(".")[0]
    assert top in shown, f"README's config reference has no [{top}] table"
    missing = sorted(set(accepted()[path]) - _shown_for(path, shown))
    assert not missing, f"README's config reference lacks [{path}] {', '.join(missing)}"
