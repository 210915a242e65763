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


# What makes a spreadsheet (Excel, LibreOffice, Google Sheets) read a cell as a formula, or as the start of
# one after it trims the cell: a product name "=HYPERLINK(...)" from the wallet's price list would run as
# one. The full-width forms are included because some spreadsheets fold them to the ASCII ones.
FORMULA_STARTS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


def text_cell(text: str) -> str:
    """A text cell of either CSV export: made printable (it may be a server's words), and prefixed with
    ``'`` when it begins with a character that would make a spreadsheet read it as a formula. Only for
    text: numbers go into their cells as they are, so a negative amount stays a number."""
    cell = printable(text)
    return "'" + cell if text[:1] in FORMULA_STARTS or cell[:1] in FORMULA_STARTS else cell


def csv_cell(value: object) -> str:
    """A cell: text by ``text_cell``, None empty, anything else (numbers, true/false, the products list,
    the resolution object) as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return text_cell(value)
    return json.dumps(value, separators=(",", ":"))


def write_csv(sales: Iterable[SaleRecord], out: TextIO) -> None:
    """The header, then one row per sale."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for sale in sales:
        fields = sale.as_json()
        writer.writerow([csv_cell(fields[name]) for name in CSV_FIELDS])
