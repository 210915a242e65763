"""Test rig for the ready2order mirror: the [ready2order] section for an emulator, and what the emulator
and the journal say about the invoices."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from terminal.emulator.ready2order import Ready2OrderEmulator
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
