"""Writes the benchmark's terminal configs (sim reader, loopback emulator) and their 0600 token files."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from terminal.emulator import terminal_config
from terminal.emulator.wallet import WalletEmulator
from terminal.model import ProductId

BIG_BALANCE_CENTS = 10**9  # every benchmark tap must approve
MEMORY_DIR = Path("/dev/shm")


def bench_dir(prefix: str, *, memory: bool = False) -> Path:
    """A fresh temporary directory; with ``memory`` on tmpfs (``/dev/shm``) where there is one.

    A stage whose figure is the firmware's own speed against a floor without a disk in it (an online
    tap against the bare requests, the outbox's delivery rate) keeps its journal in memory: there an
    fsync costs nothing, while on a disk shared with a running test suite one costs 2 to 20 ms and the
    figure would measure the neighbours. What a durable commit costs on the real disk is measured on
    its own (``enqueue_per_s`` against ``raw_sqlite_per_s``, same disk, interleaved).
    """
    if memory and MEMORY_DIR.is_dir() and os.access(MEMORY_DIR, os.W_OK | os.X_OK):
        return Path(tempfile.mkdtemp(prefix=prefix, dir=MEMORY_DIR))
    return Path(tempfile.mkdtemp(prefix=prefix))


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
