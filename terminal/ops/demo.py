"""``taptill demo``: the terminal against the local wallet and ready2order emulators, sim reader, console and
PNG screens; every booked sale's invoice is printed as it appears in the (emulated) fiscal POS. In table
mode the bills come from the PAR Brink emulator's demo tables."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from hw.display.console import ConsoleDisplay
from hw.display.tee import TeeDisplay
from hw.readers.sim import send_command
from terminal.brink.business_date import DEFAULT_STARTS, business_date
from terminal.config import Config, load_config
from terminal.device_loop import DeviceLoop
from terminal.emulator.brink import parties as brink_parties
from terminal.emulator.brink.server import DEMO_ACCESS_TOKEN, DEMO_LOCATION_TOKEN, BrinkEmulator
from terminal.emulator.ready2order import Ready2OrderEmulator
from terminal.emulator.wallet import WalletEmulator
from terminal.ops.operator_card import create_operator_key, operator_line
from terminal.screens import ProcessingScreen, Screen
from terminal.service.run import RunOptions, run_terminal

MAX = "04A1B2C3D4E5F6"  # 20,00 €
ERIKA = "04:55:66:77:88:aa:bb"  # 5,00 €, typed the way a phone app shows it
EMPTY = "04000000000001"  # 0,00 €
STRANGER = "04BADC0FFEE000"  # no wallet
OPERATOR = "04C0FFEE000001"  # the demo kiosk's operator card
GUEST = "04DE4A7AB1E000"  # table mode: a guest with 100,00 € on the wallet

STEP_TIMEOUT_S = 10.0


class ScreenWatcher:
    """A Display that remembers what was shown, so the scenario can wait for a tap's outcome."""

    def __init__(self) -> None:
        self.shown: list[Screen] = []
        self._cond = threading.Condition()

    def show(self, screen: Screen) -> None:
        with self._cond:
            self.shown.append(screen)
            self._cond.notify_all()

    def close(self) -> None:
        pass

    def wait_after(self, start: int, accept: Callable[[Screen], bool], timeout: float) -> Screen:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(accept(s) for s in self.shown[start:]), timeout=timeout)
            if not ok:
                raise TimeoutError("the terminal showed no outcome in time")
            return next(s for s in self.shown[start:] if accept(s))


def write_demo_config(
    out: Path,
    emulator: WalletEmulator,
    mode: str,
    r2o: Ready2OrderEmulator | None = None,
    brink: BrinkEmulator | None = None,
) -> Path:
    """A complete config for the demo terminal, its token files (0600) and a fresh state folder; with
    ``r2o``, its sales are mirrored to that ready2order emulator; with ``brink``, table bills come from it."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "state", ignore_errors=True)
    shutil.rmtree(out / "screens", ignore_errors=True)
    token = out / "wallet.token"
    token.touch(mode=0o600)
    token.chmod(0o600)
    token.write_text(emulator.api_token + "\n")
    operator_key = out / "operator.key"
    operator_key.unlink(missing_ok=True)
    create_operator_key(operator_key)
    config = out / "config.toml"
    config.write_text(
        f"""# written by taptill demo
[terminal]
state_dir = "state"
products = ["espresso"]
description = "Kaffee (demo)"
tag = "coffee"
mode = "{mode}"
screen_hold_s = 0.2
retap_guard_s = 0  # the scenario sells to the same card again within seconds
pairing_url = "https://pretix.example/wallet/pair"

[wallet]
base_url = "{emulator.base_url}"
token_file = "wallet.token"
dedupes = true

[offline]
mode = "accept"
probe_interval_s = 0.5

[reader]
kind = "sim"
socket = "state/tap.sock"

[display]
kind = "image"
image_dir = "screens"

[select]
buttons = {{ espresso = "espresso", cappuccino = "cappuccino" }}
cancel_button = "cancel"
cart_timeout_s = 30

[topup]
operator_key_file = "operator.key"
unlock_s = 60
buttons = {{ ten = "topup_10", twenty = "topup_20" }}
clear_button = "clear"

[topup.operators]
{operator_line(operator_key, "demo-operator", OPERATOR)}
{_ready2order_section(out, r2o) if r2o is not None else ""}{_table_section(out, brink) if brink else ""}"""
    )
    return config


def _table_section(out: Path, brink: BrinkEmulator) -> str:
    for name, value in (("brink.access", DEMO_ACCESS_TOKEN), ("brink.location", DEMO_LOCATION_TOKEN)):
        token = out / f"{name}.token"
        token.touch(mode=0o600)
        token.chmod(0o600)
        token.write_text(value + "\n")
    return f"""
[table]
table_range = [1, 13]  # the emulator's demo tables 1..12 have open bills; 13 has none
denominations = {{ 1000 = "eur10", 100 = "eur1", 10 = "ct10", 1 = "ct1" }}

[brink]
url = "{brink.url}"
access_token_file = "brink.access.token"
location_token_file = "brink.location.token"
timeout_s = 3
"""


def _ready2order_section(out: Path, r2o: Ready2OrderEmulator) -> str:
    token = out / "ready2order.token"
    token.touch(mode=0o600)
    token.chmod(0o600)
    token.write_text(r2o.account_token + "\n")
    return f"""
[ready2order]
base_url = "{r2o.base_url}"
account_token_file = "ready2order.token"
payment_method_id = 3  # "Wallet" in the emulated account
topup_payment_method_id = 1  # "Bar": the cash the operator took
user_id = 5678
requests_per_minute = 60

[ready2order.products]
espresso = {{ product_id = 111, vat_id = 2 }}
cappuccino = {{ product_id = 112, vat_id = 2 }}
topup_10 = {{ product_id = 114, vat_id = 4, name = "Guthaben 10 €" }}
topup_20 = {{ product_id = 114, vat_id = 4, name = "Guthaben 20 €" }}
"""


def run_demo(*, out: Path, interactive: bool, mode: str, gif: Path | None) -> int:
    if mode == "table":
        return _run_table_demo(out=out, interactive=interactive, gif=gif)
    with WalletEmulator.demo("doc", ledger_path=None) as emulator, Ready2OrderEmulator() as r2o:
        cfg = load_config(write_demo_config(out, emulator, mode, r2o))
        print(
            f"demo: wallet emulator at {emulator.base_url}, ready2order emulator at {r2o.base_url}; "
            f"files in {out}/",
            flush=True,
        )
        return asyncio.run(_demo(cfg, emulator, interactive, gif, r2o))


async def _demo(
    cfg: Config,
    emulator: WalletEmulator,
    interactive: bool,
    gif: Path | None,
    r2o: Ready2OrderEmulator | None = None,
    brink: BrinkEmulator | None = None,
) -> int:
    from hw.display.factory import make_display

    watcher = ScreenWatcher()
    images = make_display(
        cfg.display,
        locale=cfg.terminal.locale,
        currency=cfg.terminal.currency,
        state_dir=cfg.terminal.state_dir,
        pairing_url=cfg.terminal.pairing_url,
        gif_path=gif,
    )
    display = TeeDisplay([ConsoleDisplay(sys.stdout, locale=cfg.terminal.locale), images, watcher])
    stop = asyncio.Event()
    ready: asyncio.Future[DeviceLoop] = asyncio.get_running_loop().create_future()
    opts = RunOptions(display=display, on_ready=ready.set_result, install_signal_handlers=False)
    runner = asyncio.ensure_future(run_terminal(cfg, stop, opts))
    waits: set[asyncio.Future[object]] = {runner, ready}  # type: ignore[arg-type]
    done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    if runner in done:
        runner.result()  # raises the start-up error
        return 1
    device = ready.result()
    invoices = asyncio.ensure_future(_invoices_appearing(r2o)) if r2o is not None else None
    try:
        if interactive:
            await _interactive(cfg, emulator)
        elif cfg.terminal.mode == "select":
            await _select_scenario(cfg, emulator, watcher)
        elif cfg.terminal.mode == "topup":
            await _topup_scenario(cfg, emulator, watcher)
        elif cfg.terminal.mode == "table" and brink is not None:
            await _table_scenario(cfg, emulator, watcher, brink)
        else:
            await _scenario(cfg, emulator, watcher, device)
        if r2o is not None:
            await _mirrored(device, r2o)
    finally:
        if invoices is not None:
            invoices.cancel()
        stop.set()
        await runner
    print(f"demo: screens written as PNG to {cfg.display.image_dir}/", flush=True)
    return 0


def _run_table_demo(*, out: Path, interactive: bool, gif: Path | None) -> int:
    # The emulator's tables are open on the business date the terminal asks for (days start 06:00).
    day = business_date(datetime.now(), DEFAULT_STARTS)
    with (
        WalletEmulator.demo("doc", ledger_path=None) as emulator,
        BrinkEmulator(business_date=day) as brink,
    ):
        emulator.add_wallet(GUEST, 10000)
        cfg = load_config(write_demo_config(out, emulator, "table", brink=brink))
        print(
            f"demo: wallet emulator at {emulator.base_url}, PAR Brink emulator at {brink.url} "
            f"(business date {day}); files in {out}/",
            flush=True,
        )
        return asyncio.run(_demo(cfg, emulator, interactive, gif, brink=brink))


async def _invoices_appearing(r2o: Ready2OrderEmulator) -> None:
    """Print each invoice as it appears in the emulated ready2order account."""
    shown = 0
    while True:
        invoices = r2o.invoices()
        for inv in invoices[shown:]:
            lines = ", ".join(f"{i['item_quantity']} × {i['item_name']}" for i in inv.get("items", []))
            print(
                f"ready2order: invoice {inv['invoice_numberFull']} appears: {_euros(inv['invoice_total'])} "
                f"({lines}), reference {inv['invoice_externalReferenceNumber']}",
                flush=True,
            )
        shown = len(invoices)
        await asyncio.sleep(0.1)


def _euros(amount: object) -> str:
    return str(Decimal(str(amount)).quantize(Decimal("0.01")))


async def _mirrored(device: DeviceLoop, r2o: Ready2OrderEmulator) -> None:
    """Wait (a few seconds at most) until every booked sale's invoice is in ready2order, and say so."""
    from terminal.outbox.table import rows

    for _ in range(100):
        if not rows(device.journal, "ready2order", ("pending",)):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.15)  # the watcher prints the last one
    booked = device.journal.status().done
    print(f"\nready2order: {len(r2o.invoices())} invoice(s) for {booked} booked sale(s)", flush=True)


async def _tap(
    cfg: Config, watcher: ScreenWatcher, uid: str, title: str, *, after_processing: bool = False
) -> Screen:
    """Tap ``uid``; the outcome screen: the first that is neither "Processing" nor the screen before (or
    with ``after_processing``, the first after "Processing": an outcome that looks like the screen before)."""
    print(f"\n=== {title}: card {uid} taps ===", flush=True)
    start = len(watcher.shown)
    answer = await asyncio.to_thread(send_command, cfg.reader.socket, f"tap {uid}")
    if answer != "ok":
        raise RuntimeError(f"sim reader said: {answer}")
    before = watcher.shown[start - 1] if start else None
    if after_processing:

        def processing(s: Screen) -> bool:
            return isinstance(s, ProcessingScreen)

        await asyncio.to_thread(watcher.wait_after, start, processing, STEP_TIMEOUT_S)
        start = next(i for i in range(start, len(watcher.shown)) if processing(watcher.shown[i])) + 1
        before = None

    def outcome(s: Screen) -> bool:
        return not isinstance(s, ProcessingScreen) and s != before

    return await asyncio.to_thread(watcher.wait_after, start, outcome, STEP_TIMEOUT_S)


async def _scenario(
    cfg: Config, emulator: WalletEmulator, watcher: ScreenWatcher, device: DeviceLoop
) -> None:
    await _tap(cfg, watcher, MAX, "approved sale")
    await asyncio.sleep(0.3)
    await _tap(cfg, watcher, EMPTY, "insufficient balance")
    await asyncio.sleep(0.3)
    await _tap(cfg, watcher, STRANGER, "unknown card (not registered)")
    await asyncio.sleep(0.3)
    print("\n=== the wallet server goes down ===", flush=True)
    emulator.faults.set_down(True)
    await _tap(cfg, watcher, MAX, "offline decision")
    await asyncio.sleep(0.3)
    await _tap(cfg, watcher, ERIKA, "offline decision (card never seen online)")
    await asyncio.sleep(0.3)
    pending = device.journal.unconfirmed_count()
    print(f"\n=== the wallet server comes back; {pending} sale(s) in the queue ===", flush=True)
    emulator.faults.set_down(False)
    for _ in range(200):
        if device.journal.unconfirmed_count() == 0:
            break
        await asyncio.sleep(0.05)
    st = device.journal.status()
    print(
        f"queue drained: pending={st.pending} confirmed={st.done} declined={st.declined} "
        f"rejected={st.rejected}; server ledger holds {len(emulator.transactions())} transaction(s), "
        f"balance of {MAX} now {emulator.balance(MAX)} cents",
        flush=True,
    )
    if st.pending:
        raise RuntimeError("the queue did not drain")


async def _press(cfg: Config, watcher: ScreenWatcher, button: str) -> None:
    print(f"\n=== button {button} ===", flush=True)
    start = len(watcher.shown)
    answer = await asyncio.to_thread(send_command, cfg.reader.socket, f"press {button}")
    if answer != "ok":
        raise RuntimeError(f"sim reader said: {answer}")
    await asyncio.to_thread(watcher.wait_after, start, lambda s: True, STEP_TIMEOUT_S)


async def _select_scenario(cfg: Config, emulator: WalletEmulator, watcher: ScreenWatcher) -> None:
    await _tap(cfg, watcher, MAX, "empty cart: the balance, nothing charged")
    await asyncio.sleep(0.3)
    await _press(cfg, watcher, "espresso")
    await _press(cfg, watcher, "cappuccino")
    await _tap(cfg, watcher, MAX, "the cart is paid")
    await asyncio.sleep(0.3)
    await _press(cfg, watcher, "espresso")
    await _press(cfg, watcher, "cancel")
    print(
        f"\nserver ledger: {len(emulator.transactions())} transaction(s); "
        f"balance of {MAX} now {emulator.balance(MAX)} cents",
        flush=True,
    )


async def _topup_scenario(cfg: Config, emulator: WalletEmulator, watcher: ScreenWatcher) -> None:
    await _tap(cfg, watcher, ERIKA, "a guest while the kiosk is locked")
    await asyncio.sleep(0.3)
    await _tap(cfg, watcher, OPERATOR, "the operator unlocks")
    await _press(cfg, watcher, "ten")
    await _press(cfg, watcher, "twenty")
    await _tap(cfg, watcher, ERIKA, "the guest is credited")
    await asyncio.sleep(0.3)
    await _tap(cfg, watcher, OPERATOR, "the operator locks the kiosk")
    print(
        f"\nserver ledger: {len(emulator.transactions())} transaction(s); "
        f"balance of {ERIKA.replace(':', '').upper()} now {emulator.balance('0455667788AABB')} cents",
        flush=True,
    )


async def _staff(cfg: Config, watcher: ScreenWatcher, button: str, wait_for: type[Screen]) -> Screen:
    """Staff press ``button``; the screen of type ``wait_for`` that follows (the bill, once read)."""
    print(f"\n=== staff press {button} ===", flush=True)
    start = len(watcher.shown)
    answer = await asyncio.to_thread(send_command, cfg.reader.socket, f"press {button}")
    if answer != "ok":
        raise RuntimeError(f"sim reader said: {answer}")
    return await asyncio.to_thread(
        watcher.wait_after, start, lambda s: isinstance(s, wait_for), STEP_TIMEOUT_S
    )


async def _table_scenario(
    cfg: Config, emulator: WalletEmulator, watcher: ScreenWatcher, brink: BrinkEmulator
) -> None:
    from terminal.screens.table import (
        TableAlreadyPaidScreen,
        TableBillScreen,
        TableChooseScreen,
        TableProblemScreen,
    )

    await _staff(cfg, watcher, "ok", TableBillScreen)  # table 1: 11,11 €
    await _tap(cfg, watcher, GUEST, "the guest pays table 1")
    await asyncio.sleep(0.3)
    # staff have not closed table 1 at the POS yet: its bill is still open there, paid in the journal
    await _staff(cfg, watcher, "ok", TableAlreadyPaidScreen)
    await _tap(cfg, watcher, GUEST, "table 1 again: already paid, nothing charged", after_processing=True)
    await asyncio.sleep(0.3)
    await _staff(cfg, watcher, "ok", TableChooseScreen)
    await _staff(cfg, watcher, "next", TableChooseScreen)
    await _staff(cfg, watcher, "ok", TableBillScreen)  # table 2: 23,89 €
    print("\n=== the kitchen adds a dessert to table 2 while the bill is on screen ===", flush=True)
    day = business_date(datetime.now(), DEFAULT_STARTS)
    party = brink.location.party(day, 2)
    if party is not None:
        brink.location.add_entry(party.orders[0].id, brink_parties.Entry(9, "Dessert", "4.50", item_id=499))
    await _tap(cfg, watcher, GUEST, "the bill changed: the new amount, nothing charged")
    await asyncio.sleep(0.3)
    await _tap(cfg, watcher, GUEST, "the guest pays the new amount")
    await asyncio.sleep(0.3)
    await _staff(cfg, watcher, "next", TableChooseScreen)
    await _staff(cfg, watcher, "ok", TableBillScreen)  # table 3: 40,79 €
    await _tap(cfg, watcher, EMPTY, "insufficient balance")
    await asyncio.sleep(0.3)
    await _staff(cfg, watcher, "ok", TableChooseScreen)
    for _ in range(3):
        await _staff(cfg, watcher, "prev", TableChooseScreen)
    await _staff(cfg, watcher, "ok", TableProblemScreen)  # table 13: no open party
    debits = [t for t in emulator.transactions() if t.amount < 0]
    print(
        f"\nwallet ledger: {len(debits)} debit(s) of {', '.join(str(-t.amount) for t in debits)} cents; "
        f"balance of {GUEST} now {emulator.balance(GUEST)} cents; staff close tables 1 and 2 at the POS "
        "(taptill status lists them)",
        flush=True,
    )


async def _interactive(cfg: Config, emulator: WalletEmulator) -> None:
    print("type a card UID to tap it (try 04A1B2C3D4E5F6), 'down'/'up' switch the server, 'quit' ends")
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line or line.strip() in ("quit", "exit"):
            return
        word = line.strip()
        if word in ("down", "up"):
            emulator.faults.set_down(word == "down")
            print(f"server {word}")
            continue
        if word:
            with contextlib.suppress(OSError):
                print(await asyncio.to_thread(send_command, cfg.reader.socket, f"tap {word}"))
