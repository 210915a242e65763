"""Test rig for the ready2order mirror: the [ready2order] section for an emulator, and what the emulator
and the journal say about the invoices."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from terminal.emulator.ready2order import Ready2OrderEmulator
from terminal.journal import Journal, SaleRecord
from terminal.model import Product
from terminal.outbox.table import OutboxRow, rows
from terminal.ready2order.config import ProductMapping, Ready2OrderConfig
from terminal.ready2order.runtime import Ready2OrderRuntime
from terminal.service.secret import Secret
from tests.terminal_lab import taptill

PAYMENT_WALLET = 3
PAYMENT_CASH = 1
USER = 5678
# the demo wallet's products → the emulator's products (espresso 2.50 at 10 %, top-ups as Guthaben at 0 %)
PRODUCTS = {
    "espresso": (111, 2),
    "cappuccino": (112, 2),
    "topup_10": (114, 4),
    "topup_20": (114, 4),
}


def r2o_section(
    directory: Path,
    emulator: Ready2OrderEmulator,
    *,
    training: bool = False,
    rate: int = 600,
    open_day: bool = False,
    timeout_s: float = 2.0,
    products: Mapping[str, tuple[int, int]] = PRODUCTS,
    token: str | None = None,
) -> str:
    """``[ready2order]`` for ``emulator`` with its 0600 account token file in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    token_file = directory / "ready2order.token"
    token_file.touch(mode=0o600)
    token_file.chmod(0o600)
    token_file.write_text((token or emulator.account_token) + "\n")
    mapping = "\n".join(f"{k} = {{ product_id = {p}, vat_id = {v} }}" for k, (p, v) in products.items())
    return f"""
[ready2order]
base_url = "{emulator.base_url}"
account_token_file = "ready2order.token"
payment_method_id = {PAYMENT_WALLET}
topup_payment_method_id = {PAYMENT_CASH}
user_id = {USER}
training = {"true" if training else "false"}
requests_per_minute = {rate}
open_day = {"true" if open_day else "false"}
timeout_s = {timeout_s}
[ready2order.products]
{mapping}
"""


def invoice_records(config: Path) -> list[dict[str, Any]]:
    """The journal's ready2order records (state, ref, payload, reason, …) via ``taptill queue``-free SQL."""
    import sqlite3

    db = sqlite3.connect(f"file:{config.parent / 'state' / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT ref, state, hold, maybe_sent, attempts, reason, payload FROM outbox"
            " WHERE destination = 'ready2order' ORDER BY id"
        ).fetchall()
    finally:
        db.close()
    keys = ("ref", "state", "hold", "maybe_sent", "attempts", "reason", "payload")
    out = [dict(zip(keys, r, strict=True)) for r in rows]
    for r in out:
        r["payload"] = json.loads(r["payload"])
    return out


def status(config: Path) -> dict[str, Any]:
    return dict(json.loads(taptill("status", "--json", "--config", str(config)).stdout))


def live_invoices(emulator: Ready2OrderEmulator) -> list[dict[str, Any]]:
    """The invoices that stand (not cancelled, not a storno), oldest first."""
    return [
        i
        for i in emulator.invoices()
        if i["invoice_deleted_at"] is None and i["invoice_reference_id"] is None
    ]


def total(invoice: Mapping[str, Any]) -> Decimal:
    return Decimal(str(invoice["invoice_total"]))


# --- the mirror in-process: a real journal, the real runtime and loop, the emulator over HTTP ------------

CATALOG = (
    Product("espresso", "Espresso", 250),
    Product("cappuccino", "Cappuccino", 320),
    Product("topup_10", "Aufladen 10 €", -1000),
)


def mirror_config(
    emulator: Ready2OrderEmulator, token_file: Path | None = None, **changes: Any
) -> Ready2OrderConfig:
    cfg = Ready2OrderConfig(
        account_token_file=token_file,
        payment_method_id=PAYMENT_WALLET,
        topup_payment_method_id=PAYMENT_CASH,
        user_id=USER,
        base_url=emulator.base_url,
        requests_per_minute=6000,
        timeout_s=1.0,
        products={k: ProductMapping(p, v) for k, (p, v) in PRODUCTS.items()},
    )
    return dataclasses.replace(cfg, **changes)


class MirrorRig:
    """A journal in ``directory`` whose booked sales the mirror delivers to ``emulator``."""

    def __init__(
        self,
        directory: Path,
        emulator: Ready2OrderEmulator,
        *,
        token: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        **changes: Any,
    ) -> None:
        self.emulator = emulator
        self.token_file = directory / "ready2order.token"
        self.token_file.write_text((token or emulator.account_token) + "\n")
        self.token_file.chmod(0o600)
        self.cfg = mirror_config(emulator, self.token_file, **changes)
        self.journal = Journal.open(directory / "journal.sqlite3")
        self.runtime = Ready2OrderRuntime(
            self.cfg,
            self.journal,
            Secret(token or emulator.account_token),
            terminal="Bar 1",
            catalog=CATALOG,
            monotonic=monotonic,
            clock=clock,
        )
        self.runtime.destination.landing.after_s = 0.2  # in-process answers end with the call

    def sell(self, *products: str, card: str = "04A1B2C3D4E5F6", operator: str | None = None) -> SaleRecord:
        """A sale the wallet booked (a top-up by ``operator``, if given): journaled, then marked done with
        its invoice record."""
        items = products or ("espresso",)
        amount = -sum(next(p.price_cents for p in CATALOG if p.id == pid) for pid in items)
        sale = self.journal.record_sale(
            token_id=card,
            products=items,
            amount_cents=amount,
            description="Bar 1",
            tag=None,
            offline=False,
            operator=operator,
        )
        self.journal.mark_done(sale.id, None, self.runtime.records_for(sale))
        return sale

    def records(self) -> list[OutboxRow]:
        return list(rows(self.journal, "ready2order"))

    def waiting(self) -> int:
        return sum(1 for r in self.records() if r.state == "pending" and not r.hold)

    async def drain(self, timeout_s: float = 15.0) -> None:
        """Run the mirror until no record waits (held ones do not count), at most ``timeout_s``."""
        stop = asyncio.Event()
        task = asyncio.ensure_future(self.runtime.loop.run(stop))
        try:
            deadline = asyncio.get_running_loop().time() + timeout_s
            while self.waiting() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task
        assert self.waiting() == 0, [(r.ref, r.state, r.reason) for r in self.records()]

    async def aclose(self) -> None:
        """Close the client (the journal stays open for the test to read)."""
        await self.runtime.client.aclose()


# --- the grant flow, from the account owner's side ------------------------------------------------------

# Grant tests poll every 50 ms, far above ready2order's 60 a minute; the limit has tests of its own.
UNLIMITED = 100_000


def wait_for_pending(emulator: Ready2OrderEmulator, count: int = 1, timeout_s: float = 30.0) -> str:
    """The newest pending grant once ``count`` grants were asked for; fails at the timeout."""
    desk = emulator.grant_desk
    stop = time.monotonic() + timeout_s
    while time.monotonic() < stop:
        pending = desk.pending()
        if desk.grants_made >= count and pending:
            return pending[-1]
        time.sleep(0.02)
    raise AssertionError(f"no pending grant #{count} within {timeout_s} s ({desk.grants_made} made)")
