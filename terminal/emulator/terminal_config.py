"""Writes a complete terminal config (sim reader) for a loopback wallet emulator, for tests and the bench."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from terminal.emulator.wallet import WalletEmulator
from terminal.model import ProductId


def espresso_id(flavour: str) -> ProductId:
    """The espresso product as each emulator flavour lists it (pretix item ids are integers)."""
    return "espresso" if flavour == "doc" else 1


def write_terminal_config(
    directory: Path,
    emulator: WalletEmulator,
    *,
    products: Sequence[ProductId] | None = None,
    mode: str = "tap",
    description: str = "Kaffee",
    tap_budget_ms: int = 800,
    screen_hold_s: float = 0.05,
    retap_guard_s: float | None = 0.0,
    timeout_s: float = 1.5,
    offline_mode: str = "accept",
    offline_limit_cents: int | None = None,
    probe_interval_s: float = 0.2,
    display: str = "none",
    extra: str = "",
) -> Path:
    """``directory``/config.toml with its 0600 token file; state, journal and tap socket go below it.

    The wallet's ``dedupes`` follows the emulator's flavour; ``offline_limit_cents`` sets both offline
    limits (per card and terminal) when a run must be decided by the policy's accept path.
    ``retap_guard_s`` is 0 unless asked for: runs sell to one card many times within seconds, each a
    purchase of its own; None leaves the key out (the terminal's default).
    """
    directory.mkdir(parents=True, exist_ok=True)
    token = directory / "wallet.token"
    token.touch(mode=0o600)
    token.chmod(0o600)
    token.write_text(emulator.api_token + "\n")
    prods = list(products) if products is not None else [espresso_id(emulator.flavour)]
    limits = (
        f"max_per_card_cents = {offline_limit_cents}\nmax_total_cents = {offline_limit_cents}\n"
        if offline_limit_cents is not None
        else ""
    )
    guard = f"retap_guard_s = {retap_guard_s}\n" if retap_guard_s is not None else ""
    config = directory / "config.toml"
    config.write_text(
        f"""
[terminal]
mode = "{mode}"
state_dir = "state"
products = {json.dumps(prods)}
description = "{description}"
tag = "coffee"
tap_budget_ms = {tap_budget_ms}
screen_hold_s = {screen_hold_s}
{guard}
[wallet]
base_url = "{emulator.base_url}"
token_file = "wallet.token"
dedupes = {"true" if emulator.flavour == "doc" else "false"}
timeout_s = {timeout_s}

[offline]
mode = "{offline_mode}"
{limits}probe_interval_s = {probe_interval_s}

[reader]
kind = "sim"
socket = "state/tap.sock"

[display]
kind = "{display}"
{extra}
"""
    )
    return config
