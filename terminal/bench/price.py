"""Price to screen: a price change on the Partybroker emulator → the new ladder price on the idle screen.

Uses ``charge = "ladder"``, the mode in which the market price is what the screen shows; the expected
p50 is about half the poll interval (``price_interval_s``), as a change lands at a random point of it.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from terminal.bench.config import BIG_BALANCE_CENTS, write_bench_config
from terminal.bench.stats import percentile
from terminal.bench.tap import InProcessTerminal
from terminal.config import load_config
from terminal.emulator.partybroker import EmulatedDrink, PartybrokerEmulator
from terminal.emulator.wallet import WalletEmulator
from terminal.screens import IdleScreen, Screen

DRINK_ID = 145
STEPS = (("beer_s", "Bier", 250), ("beer_m", "Bier", 290), ("beer_l", "Bier", 330))
CHANGE_TIMEOUT_FACTOR = 4  # a change must be on screen within this many poll intervals
PASSWORD = "bench"


def _partybroker_section(directory: Path, party: PartybrokerEmulator, interval_s: float) -> str:
    password = directory / "partybroker.password"
    password.touch(mode=0o600)
    password.chmod(0o600)
    password.write_text(PASSWORD)
    return f"""
[partybroker]
base_url = "{party.base_url}"
party_id = "{party.party_id}"
username = "{party.username}"
password_file = "partybroker.password"
price_interval_s = {interval_s}
charge = "ladder"
[partybroker.drinks]
beer = {{ id = {DRINK_ID}, ladder = ["beer_s", "beer_m", "beer_l"] }}
"""


def _shows(cents: int) -> Callable[[Screen], bool]:
    def accept(screen: Screen) -> bool:
        return isinstance(screen, IdleScreen) and any(line.price_cents == cents for line in screen.prices)

    return accept


def measure_price_to_screen(n: int = 20, interval_s: float = 0.5) -> dict[str, float]:
    """p50 ms from ``set_price`` on the emulator to the idle screen showing the new step, ``n`` changes."""
    workdir = Path(tempfile.mkdtemp(prefix="taptill-bench-price-"))
    drinks = (EmulatedDrink(DRINK_ID, "123456", "Bier", 290, min_cents=100, max_cents=1000),)
    try:
        with (
            WalletEmulator("doc", products=STEPS, wallets={"04E0E0E0E0E0E0": BIG_BALANCE_CENTS}) as wallet,
            PartybrokerEmulator(
                drinks=drinks, password=PASSWORD, price_interval_s=interval_s, rise_cents=0, fall_cents=0
            ) as party,
        ):
            extra = _partybroker_section(workdir, party, interval_s)
            cfg = load_config(write_bench_config(workdir, wallet, products=["beer"], extra=extra))
            with InProcessTerminal(cfg) as terminal:
                timeout = CHANGE_TIMEOUT_FACTOR * interval_s + 2.0
                terminal.display.wait_for(0, _shows(290), timeout)
                samples: list[float] = []
                rng = random.Random(0)
                for i in range(n):
                    # Change at a random point of the poll cycle, not always just after a poll.
                    time.sleep(rng.uniform(0.0, interval_s))
                    cents = 330 if i % 2 == 0 else 250
                    start = terminal.display.mark()
                    changed = time.perf_counter()
                    party.set_price(DRINK_ID, cents)
                    _, shown = terminal.display.wait_for(start, _shows(cents), timeout)
                    samples.append((shown - changed) * 1000)
        p50 = percentile(samples, 50)
        interval_ms = interval_s * 1000
        return {
            "p50": round(p50, 1),
            "poll_interval_ms": round(interval_ms, 1),
            "p50_per_interval": round(p50 / interval_ms, 2),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
