"""Writes the benchmark's terminal configs (sim reader, loopback emulator) and their 0600 token files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from terminal.emulator.wallet_server import WalletEmulator
from terminal.model import ProductId

BIG_BALANCE_CENTS = 10**9  # every benchmark tap must approve


def espresso_id(emulator: WalletEmulator) -> ProductId:
    """The espresso product as each emulator flavour lists it (pretix item ids are integers)."""
    return "espresso" if emulator.flavour == "doc" else 1


def write_bench_config(
    directory: Path,
    emulator: WalletEmulator,
    *,
    products: Sequence[ProductId] | None = None,
    tap_budget_ms: int = 800,
    screen_hold_s: float = 0.01,
    probe_interval_s: float = 0.5,
    display: str = "none",
    extra: str = "",
) -> Path:
    """A complete config in ``directory`` (state, journal and tap socket below it); returns its path.

    The offline limits are lifted so a long run of offline taps is decided by the policy's accept path.
    """
    directory.mkdir(parents=True, exist_ok=True)
    token = directory / "wallet.token"
    token.touch(mode=0o600)
    token.chmod(0o600)
    token.write_text(emulator.api_token + "\n")
    prods = list(products) if products is not None else [espresso_id(emulator)]
    config = directory / "config.toml"
    config.write_text(
        f"""# written by taptill's benchmark
[terminal]
state_dir = "state"
products = {json.dumps(prods)}
description = "Kaffee (bench)"
tag = "coffee"
tap_budget_ms = {tap_budget_ms}
screen_hold_s = {screen_hold_s}

[wallet]
base_url = "{emulator.base_url}"
token_file = "wallet.token"
dedupes = {"true" if emulator.flavour == "doc" else "false"}
timeout_s = 5.0

[offline]
mode = "accept"
max_per_card_cents = {BIG_BALANCE_CENTS}
max_total_cents = {BIG_BALANCE_CENTS}
probe_interval_s = {probe_interval_s}

[reader]
kind = "sim"
socket = "state/tap.sock"

[display]
kind = "{display}"
{extra}"""
    )
    return config
