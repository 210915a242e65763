"""Test rig for table mode: a terminal config for the wallet and PAR Brink emulators, and staff's buttons."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from terminal.brink.business_date import DEFAULT_STARTS, business_date
from terminal.emulator.brink.server import DEMO_ACCESS_TOKEN, DEMO_LOCATION_TOKEN, BrinkEmulator
from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import TerminalProcess, taptill, wait_for, write_config

GUEST = "04DE4A7AB1E000"  # a guest's card with 100,00 € (added by each test)
DENOMINATIONS = '{ 1000 = "eur10", 100 = "eur1", 10 = "ct10", 1 = "ct1" }'
CENTS = {"eur10": 1000, "eur1": 100, "ct10": 10, "ct1": 1}


def today() -> date:
    """The business date the terminal asks for now (days start 06:00, the local clock): the emulator's
    parties are put on it."""
    return business_date(datetime.now(), DEFAULT_STARTS)


def write_table_config(
    directory: Path,
    wallet: WalletEmulator,
    brink: BrinkEmulator,
    *,
    tables: str = "table_range = [1, 13]",
    terminal_id: str = "bar1",
    denominations: str = DENOMINATIONS,
    budget_ms: int = 2000,
    timeout_s: float = 1.5,
) -> Path:
    """A table terminal (console display, so the log shows its screens) for these emulators, named
    ``terminal_id`` among the venue's terminals."""
    for name, value in (("access", DEMO_ACCESS_TOKEN), ("location", DEMO_LOCATION_TOKEN)):
        token = directory / f"brink.{name}.token"
        directory.mkdir(parents=True, exist_ok=True)
        token.touch(mode=0o600)
        token.chmod(0o600)
        token.write_text(value + "\n")
    extra = f"""
[table]
{tables}
denominations = {denominations}
terminal_id = "{terminal_id}"

[brink]
url = "{brink.url}"
access_token_file = "brink.access.token"
location_token_file = "brink.location.token"
timeout_s = 2
"""
    return write_config(
        directory,
        wallet,
        products=[],
        mode="table",
        display="console",
        budget_ms=budget_ms,
        timeout_s=timeout_s,
        extra=extra,
    )


def press(term: TerminalProcess, button: str) -> None:
    taptill("press", button, "--config", str(term.config))


def on_screen(term: TerminalProcess) -> str:
    """The screen the console display drew last (its box in the terminal's log)."""
    log = term.log()
    return log[log.rfind("┌") :]


def show_bill(term: TerminalProcess, *buttons: str, shows: str = "Tap card to pay") -> None:
    """Staff press ``buttons`` (the last one ``ok``) and the terminal shows what it read: the bill (the
    screen drawn last has ``shows``, and it was drawn after the presses)."""
    for button in buttons:
        drawn = term.log().count("┌")
        press(term, button)
        wait_for(lambda n=drawn: term.log().count("┌") > n, what=f"the screen after {button}")
    wait_for(lambda: shows in on_screen(term), what=f"{shows!r} on screen")


def tap(term: TerminalProcess, uid: str = GUEST) -> str:
    """The decision line of a tap (``taptill tap``'s)."""
    return term.send(f"tap-wait {uid}")
