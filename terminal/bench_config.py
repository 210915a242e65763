"""Writes the benchmark's terminal configs (sim reader, loopback emulator) and their 0600 token files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from terminal.emulator import terminal_config
from terminal.emulator.wallet_server import WalletEmulator
from terminal.model import ProductId

BIG_BALANCE_CENTS = 10**9  # every benchmark tap must approve


def espresso_id(emulator: WalletEmulator) -> ProductId:
    """The espresso product as each emulator flavour lists it (pretix item ids are integers)."""
    return terminal_config.espresso_id(emulator.flavour)


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
    return terminal_config.write_terminal_config(
        directory,
        emulator,
        products=products,
        description="Kaffee (bench)",
        tap_budget_ms=tap_budget_ms,
        screen_hold_s=screen_hold_s,
        timeout_s=5.0,
        offline_limit_cents=BIG_BALANCE_CENTS,
        probe_interval_s=probe_interval_s,
        display=display,
        extra=extra,
    )
