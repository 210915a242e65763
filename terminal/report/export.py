"""``taptill journal --csv``: the sales as CSV, one row per sale with ``journal --json``'s fields."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import TextIO

from terminal.journal import SaleRecord
from terminal.model import printable

# SaleRecord.as_json's keys, in its order: the CSV header (a test holds the two together)
CSV_FIELDS = (
    "id",
    "idempotency_key",
    "token_id",
    "products",
    "amount_cents",
    "state",
    "reason",
    "offline",
    "operator",
    "balance_after",
    "attempts",
    "held",
    "dispensed",
    "approved",
    "to_refund",
    "resolved",
    "created_at",
    "updated_at",
)


def csv_cell(value: object) -> str:
    """A cell: text as it is (made printable: it may be a server's words), None empty, anything else
    (numbers, true/false, the products list, the resolution object) as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return printable(value)
    return json.dumps(value, separators=(",", ":"))


def write_csv(sales: Iterable[SaleRecord], out: TextIO) -> None:
    """The header, then one row per sale."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for sale in sales:
        fields = sale.as_json()
        writer.writerow([csv_cell(fields[name]) for name in CSV_FIELDS])
