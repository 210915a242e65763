"""The emulated account's invoices: what one is, how an item line is checked and priced, which invoices a
search's date window holds, and how an invoice looks on the wire.

Choices where the API descriptions are silent: invoices are numbered ``RG<year>/<n>`` (training ones
``TR<year>/<n>``, counted apart); times are the account's local time (Europe/Vienna), as the API shows
them; whole dates in ``dateFrom``/``dateTo`` are the account's days, and the default ``dateField``
(``daily_report``) filters by the day the invoice's daily report was opened, not by the invoice's own time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from terminal.emulator.ready2order.catalog import Catalog
from terminal.emulator.ready2order.wire import Answer, api_error

CENT = Decimal("0.01")
DATE_FIELDS = ("daily_report", "dr_startDate", "bill", "b_dateTime")


@dataclass
class Day:
    """A daily report: invoices are billed into the open one."""

    id: int
    opened_at: float  # epoch seconds
    closed_at: float | None = None


@dataclass
class BilledInvoice:
    id: int
    created_at: float  # epoch seconds
    day: Day
    number: int
    number_full: str
    total: Decimal  # euros, gross
    test_mode: bool
    reference: str | None
    text: str | None
    payment_method_id: int
    user_id: int
    items: list[dict[str, Any]]
    reference_id: int | None = None  # a storno's original
    deleted_at: float | None = None


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def bill_line(item: object, n: int, net_base: bool, catalog: Catalog) -> dict[str, Any] | Answer:
    """``items[n]`` of an invoice as the account stores it (gross price and total), or a 400 answer."""
    where = f"items[{n}]"
    if not isinstance(item, dict):
        return api_error(400, f"{where} must be an object")
    name, qty = item.get("item_name"), item.get("item_quantity")
    if not isinstance(name, str) or not name.strip():
        return api_error(400, f"{where}.item_name is required")
    if isinstance(qty, bool) or not isinstance(qty, int | float | str):
        return api_error(400, f"{where}.item_quantity must be a number")
    try:
        quantity = Decimal(str(qty))
        price = Decimal(str(item.get("item_price")))
    except InvalidOperation:
        return api_error(400, f"{where}.item_price and item_quantity must be numbers")
    if not price.is_finite() or not quantity.is_finite() or quantity == 0:
        return api_error(400, f"{where} has no usable price or quantity")
    vat_id, vat_rate = item.get("item_vatId"), item.get("item_vatRate")
    if vat_id is not None:
        if not is_int(vat_id) or vat_id not in catalog.vat_rates:
            return api_error(400, f"{where}.item_vatId {str(vat_id)[:20]} is not a VAT rate of this account")
        rate = catalog.vat_rates[vat_id]
    elif vat_rate is not None:
        try:
            rate = Decimal(str(vat_rate))
        except InvalidOperation:
            return api_error(400, f"{where}.item_vatRate must be a number")
    else:
        return api_error(400, f"{where} needs item_vatId or item_vatRate")
    product_id = item.get("product_id")
    if product_id is not None and not catalog.has_product(product_id):
        return api_error(400, f"{where}.product_id {str(product_id)[:20]} is not a product of this account")
    base = str(item.get("item_priceBase", "brutto")).lower()
    gross = price * (1 + rate / 100) if net_base or base in ("netto", "net") else price
    return {
        "item_name": name[:200],
        "item_quantity": float(quantity) if quantity != quantity.to_integral() else int(quantity),
        "item_price": str(gross.quantize(CENT, ROUND_HALF_UP)),
        "item_vatRate": float(rate),
        "item_total": str((gross * quantity).quantize(CENT, ROUND_HALF_UP)),
        "product_id": product_id,
    }


def window_bound(text: str | None, tz: ZoneInfo, *, end: bool) -> float | None:
    """A dateFrom/dateTo as epoch seconds: a whole date is the account's day (to: its end); ValueError."""
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=tz)
            return (start + timedelta(days=1)).timestamp() if end else start.timestamp()
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text[:30]!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.timestamp()


def within(invoice: BilledInvoice, field: str, start: float | None, stop: float | None) -> bool:
    """Whether the search's window holds ``invoice`` by ``field`` (its daily report's day or its own time)."""
    at = invoice.day.opened_at if field in ("daily_report", "dr_startDate") else invoice.created_at
    return (start is None or at >= start) and (stop is None or at < stop)


def local_time(epoch: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(epoch, tz).strftime("%Y-%m-%d %H:%M:%S")


def wire(i: BilledInvoice, tz: ZoneInfo, *, items: bool) -> dict[str, Any]:
    """The invoice as the API shows it (``items``: with its lines)."""
    shown: dict[str, Any] = {
        "invoice_id": i.id,
        "invoice_reference_id": i.reference_id,
        "invoice_timestamp": local_time(i.created_at, tz),
        "invoice_number": i.number,
        "invoice_numberFull": i.number_full,
        "invoice_total": float(i.total),
        "invoice_priceBase": "brutto",
        "invoice_deleted_at": None if i.deleted_at is None else local_time(i.deleted_at, tz),
        "invoice_text": i.text,
        "invoice_externalReferenceNumber": i.reference,
        "invoice_paid": True,
        "invoice_testMode": i.test_mode,
        "paymentMethod_id": i.payment_method_id,
        "user_id": i.user_id,
        "dailyReport_id": i.day.id,
    }
    if items:
        shown["items"] = [dict(line) for line in i.items]
    return shown
