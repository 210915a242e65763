"""One emulated ready2order account: products, payment methods, VAT rates, daily reports and invoices.

Pure state behind one lock; the server (``server.py``) turns its (status, JSON) answers into HTTP. Choices
where the API descriptions are silent: invoices are numbered ``RG<year>/<n>`` (training ones
``TR<year>/<n>``, counted apart); times are the account's local time (Europe/Vienna), as the API shows
them; an invoice needs an open daily report (400 otherwise); a search's ``query`` matches the invoice
number or the external reference (case-insensitive, a part is enough) and lists newest first; whole dates
in ``dateFrom``/``dateTo`` are the account's days, and the default ``dateField`` (``daily_report``)
filters by the day the invoice's daily report was opened, not by the invoice's own time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

CENT = Decimal("0.01")
MAX_PAGE = 250
PriceStyle = str  # "number", "string" or "mixed" (every other product's price as a string)


@dataclass(frozen=True)
class EmulatedProduct:
    id: int
    name: str
    price: Decimal  # euros, gross
    vat_id: int
    external_reference: str | None = None
    item_number: str | None = None


DEFAULT_PRODUCTS: tuple[EmulatedProduct, ...] = (
    EmulatedProduct(111, "Espresso", Decimal("2.50"), 2, "espresso", "1001"),
    EmulatedProduct(112, "Cappuccino", Decimal("3.20"), 2, "cappuccino", "1002"),
    EmulatedProduct(113, "Bier 0,5", Decimal("4.50"), 1, None, "2001"),
    EmulatedProduct(114, "Guthaben", Decimal("0.00"), 4, "topup", "9001"),
)
DEFAULT_PAYMENT_METHODS: dict[int, str] = {1: "Bar", 2: "Bankomat", 3: "Wallet"}
DEFAULT_VAT_RATES: dict[int, Decimal] = {
    1: Decimal("20"),
    2: Decimal("10"),
    3: Decimal("13"),
    4: Decimal("0"),
}
DEFAULT_USERS: dict[int, str] = {1: "Chef", 5678: "taptill"}

Answer = tuple[int, object]


def _error(status: int, msg: str, code: str | None = None) -> Answer:
    body: dict[str, object] = {"error": True, "msg": msg}
    if code is not None:
        body["code"] = code
    return status, body


@dataclass
class _Day:
    id: int
    opened_at: float  # epoch seconds
    closed_at: float | None = None


@dataclass
class _Invoice:
    id: int
    created_at: float  # epoch seconds
    day: _Day
    number: int
    number_full: str
    total: Decimal
    test_mode: bool
    reference: str | None
    text: str | None
    payment_method_id: int
    user_id: int
    items: list[dict[str, Any]]
    reference_id: int | None = None  # a storno's original
    deleted_at: float | None = None


class Account:
    """The account's data; every public method takes the lock and answers (status, JSON value)."""

    def __init__(
        self,
        now: Callable[[], float],
        *,
        products: Iterable[EmulatedProduct] = DEFAULT_PRODUCTS,
        payment_methods: Mapping[int, str] | None = None,
        vat_rates: Mapping[int, Decimal] | None = None,
        users: Mapping[int, str] | None = None,
        timezone: str = "Europe/Vienna",
        price_style: PriceStyle = "mixed",
        day_open: bool = True,
    ) -> None:
        if price_style not in ("number", "string", "mixed"):
            raise ValueError(f"price_style {price_style!r}: use 'number', 'string' or 'mixed'")
        self.now = now
        self.products = tuple(products)
        self.payment_methods = dict(payment_methods or DEFAULT_PAYMENT_METHODS)
        self.vat_rates = dict(vat_rates or DEFAULT_VAT_RATES)
        self.users = dict(users or DEFAULT_USERS)
        self.tz = ZoneInfo(timezone)
        self.price_style = price_style
        self._lock = threading.Lock()
        self._days: list[_Day] = []
        self._invoices: list[_Invoice] = []
        self._numbers: dict[tuple[int, bool], int] = {}
        if day_open:
            self._days.append(_Day(1, now()))

    # --- inspection (tests, the demo, the control endpoints) --------------------------------------------

    def invoices(self, *, include_cancelled: bool = True) -> list[dict[str, Any]]:
        """Every invoice as the API shows it (stornos included), oldest first."""
        with self._lock:
            return [
                self._wire(i, items=True)
                for i in self._invoices
                if include_cancelled or (i.deleted_at is None and i.reference_id is None)
            ]

    def day_is_open(self) -> bool:
        with self._lock:
            return self._open_day() is not None

    def set_day(self, open_: bool, opened_at: float | None = None) -> None:
        """Close the open daily report, or open one (``opened_at``: when, epoch seconds; default now)."""
        with self._lock:
            day = self._open_day()
            if not open_ and day is not None:
                day.closed_at = self.now()
            elif open_ and day is None:
                self._days.append(_Day(len(self._days) + 1, self.now() if opened_at is None else opened_at))
            elif open_ and day is not None and opened_at is not None:
                day.opened_at = opened_at

    # --- the API -------------------------------------------------------------------------------------------

    def list_products(self, page: int, limit: int) -> Answer:
        if page < 1 or not 1 <= limit <= MAX_PAGE:
            return _error(400, f"page must be 1 or more and limit between 1 and {MAX_PAGE}")
        start = (page - 1) * limit
        return 200, [self._product(p, n) for n, p in enumerate(self.products)][start : start + limit]

    def list_payment_methods(self) -> Answer:
        return 200, [
            {"payment_id": pid, "payment_name": name, "payment_markAsPaid": True, "payment_type_id": 1}
            for pid, name in self.payment_methods.items()
        ]

    def list_vat_rates(self) -> Answer:
        return 200, [
            {"id": vid, "value": float(rate), "name": f"{rate}%", "isDefault": vid == 1}
            for vid, rate in self.vat_rates.items()
        ]

    def day_status(self) -> Answer:
        with self._lock:
            day = self._open_day()
            if day is None:
                return 200, {"status": "closed"}
            return 200, {
                "status": "open",
                "dailyReport_id": day.id,
                "dailyReport_startDate": self._local(day.opened_at),
            }

    def open_day(self) -> Answer:
        with self._lock:
            if self._open_day() is not None:
                return _error(400, "A daily report is already open", "dailyReportAlreadyOpen")
            day = _Day(len(self._days) + 1, self.now())
            self._days.append(day)
            return 200, {"status": "open", "dailyReport_id": day.id}

    def create_invoice(self, body: object) -> Answer:
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object")
        pm, user = body.get("paymentMethod_id"), body.get("user_id")
        if not _is_int(pm) or pm not in self.payment_methods:
            return _error(400, f"paymentMethod_id {str(pm)[:20]} is not a payment method of this account")
        if not _is_int(user) or user not in self.users:
            return _error(400, f"user_id {str(user)[:20]} is not a user of this account")
        items = body.get("items")
        if not isinstance(items, list) or not items:
            return _error(400, "items must be a non-empty list")
        net_base = str(body.get("invoice_priceBase", "gross")).lower() in ("net", "netto")
        lines: list[dict[str, Any]] = []
        total = Decimal(0)
        for n, item in enumerate(items):
            line = self._line(item, n, net_base)
            if isinstance(line, tuple):
                return line
            lines.append(line)
            total += Decimal(line["item_total"])
        reference = body.get("invoice_externalReferenceNumber")
        if reference is not None and not isinstance(reference, str):
            return _error(400, "invoice_externalReferenceNumber must be a string")
        test_mode = body.get("invoice_testMode", False)
        if not isinstance(test_mode, bool):
            return _error(400, "invoice_testMode must be true or false")
        text = body.get("invoice_text")
        with self._lock:
            day = self._open_day()
            if day is None:
                return _error(400, "There is no open daily report; open one before billing", "noDailyReport")
            invoice = self._append(
                day, total, test_mode, reference, text if isinstance(text, str) else None, pm, user, lines
            )
            return 200, self._wire(invoice, items=True)

    def search(self, params: Mapping[str, str]) -> Answer:
        try:
            offset = int(params.get("offset", "0"))
            limit = int(params.get("limit", "50"))
        except ValueError:
            return _error(400, "offset and limit must be whole numbers")
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            return _error(400, f"offset must be 0 or more and limit between 1 and {MAX_PAGE}")
        test_mode = params.get("testMode", "false").lower() in ("true", "1")
        field = params.get("dateField", "daily_report")
        if field not in ("daily_report", "dr_startDate", "bill", "b_dateTime"):
            return _error(
                400, f"dateField {field[:20]!r} is none of daily_report, dr_startDate, bill, b_dateTime"
            )
        try:
            start = self._bound(params.get("dateFrom"), end=False)
            stop = self._bound(params.get("dateTo"), end=True)
        except ValueError as exc:
            return _error(400, str(exc))
        query = params.get("query", "").strip().lower()
        with self._lock:
            found = [
                i
                for i in reversed(self._invoices)
                if i.test_mode == test_mode
                and (not query or query in i.number_full.lower() or query in (i.reference or "").lower())
                and self._within(i, field, start, stop)
            ]
            items = params.get("items", "false").lower() in ("true", "1")
            page = [self._wire(i, items=items) for i in found[offset : offset + limit]]
        return 200, {
            "invoices": page,
            "count": len(found),
            "offset": offset,
            "limit": limit,
            "dateFrom": params.get("dateFrom"),
            "dateTo": params.get("dateTo"),
            "query": params.get("query"),
        }

    def get_invoice(self, invoice_id: int) -> Answer:
        with self._lock:
            invoice = self._find(invoice_id)
            if invoice is None:
                return _error(404, f"Invoice {invoice_id} not found")
            return 200, self._wire(invoice, items=True)

    def cancel(self, invoice_id: int) -> Answer:
        """Storno: the original is marked cancelled and a negative document refers to it."""
        with self._lock:
            original = self._find(invoice_id)
            if original is None:
                return _error(404, f"Invoice {invoice_id} not found")
            if original.deleted_at is not None or original.reference_id is not None:
                return _error(
                    400, f"Invoice {invoice_id} cannot be cancelled (cancelled already or a storno)"
                )
            day = self._open_day()
            if day is None:
                return _error(400, "There is no open daily report; open one before billing", "noDailyReport")
            original.deleted_at = self.now()
            lines = [
                {
                    **line,
                    "item_quantity": -line["item_quantity"],
                    "item_total": str(-Decimal(line["item_total"])),
                }
                for line in original.items
            ]
            storno = self._append(
                day,
                -original.total,
                original.test_mode,
                original.reference,
                f"Storno {original.number_full}",
                original.payment_method_id,
                original.user_id,
                lines,
            )
            storno.reference_id = original.id
            return 200, self._wire(storno, items=True)

    # --- inside the lock ------------------------------------------------------------------------------

    def _open_day(self) -> _Day | None:
        return next((d for d in reversed(self._days) if d.closed_at is None), None)

    def _find(self, invoice_id: int) -> _Invoice | None:
        return next((i for i in self._invoices if i.id == invoice_id), None)

    def _append(
        self,
        day: _Day,
        total: Decimal,
        test_mode: bool,
        reference: str | None,
        text: str | None,
        payment_method_id: int,
        user_id: int,
        lines: list[dict[str, Any]],
    ) -> _Invoice:
        now = self.now()
        year = datetime.fromtimestamp(now, self.tz).year
        key = (year, test_mode)
        self._numbers[key] = self._numbers.get(key, 0) + 1
        number = self._numbers[key]
        invoice = _Invoice(
            id=1000 + len(self._invoices) + 1,
            created_at=now,
            day=day,
            number=number,
            number_full=f"{'TR' if test_mode else 'RG'}{year}/{number}",
            total=total.quantize(CENT, ROUND_HALF_UP),
            test_mode=test_mode,
            reference=reference,
            text=text,
            payment_method_id=payment_method_id,
            user_id=user_id,
            items=lines,
        )
        self._invoices.append(invoice)
        return invoice

    def _line(self, item: object, n: int, net_base: bool) -> dict[str, Any] | Answer:
        where = f"items[{n}]"
        if not isinstance(item, dict):
            return _error(400, f"{where} must be an object")
        name, qty = item.get("item_name"), item.get("item_quantity")
        if not isinstance(name, str) or not name.strip():
            return _error(400, f"{where}.item_name is required")
        if isinstance(qty, bool) or not isinstance(qty, int | float | str):
            return _error(400, f"{where}.item_quantity must be a number")
        try:
            quantity = Decimal(str(qty))
            price = Decimal(str(item.get("item_price")))
        except InvalidOperation:
            return _error(400, f"{where}.item_price and item_quantity must be numbers")
        if not price.is_finite() or not quantity.is_finite() or quantity == 0:
            return _error(400, f"{where} has no usable price or quantity")
        vat_id, vat_rate = item.get("item_vatId"), item.get("item_vatRate")
        if vat_id is not None:
            if not _is_int(vat_id) or vat_id not in self.vat_rates:
                return _error(400, f"{where}.item_vatId {str(vat_id)[:20]} is not a VAT rate of this account")
            rate = self.vat_rates[vat_id]
        elif vat_rate is not None:
            try:
                rate = Decimal(str(vat_rate))
            except InvalidOperation:
                return _error(400, f"{where}.item_vatRate must be a number")
        else:
            return _error(400, f"{where} needs item_vatId or item_vatRate")
        product_id = item.get("product_id")
        if product_id is not None and not any(p.id == product_id for p in self.products):
            return _error(400, f"{where}.product_id {str(product_id)[:20]} is not a product of this account")
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

    def _bound(self, text: str | None, *, end: bool) -> float | None:
        """A dateFrom/dateTo as epoch seconds: a whole date is the account's day (to: its end)."""
        if not text:
            return None
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                start = datetime(day.year, day.month, day.day, tzinfo=self.tz)
                return (start + timedelta(days=1)).timestamp() if end else start.timestamp()
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{text[:30]!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=self.tz)
        return when.timestamp()

    @staticmethod
    def _within(invoice: _Invoice, field: str, start: float | None, stop: float | None) -> bool:
        at = invoice.day.opened_at if field in ("daily_report", "dr_startDate") else invoice.created_at
        return (start is None or at >= start) and (stop is None or at < stop)

    def _local(self, epoch: float) -> str:
        return datetime.fromtimestamp(epoch, self.tz).strftime("%Y-%m-%d %H:%M:%S")

    def _money(self, amount: Decimal, n: int) -> float | str:
        as_string = self.price_style == "string" or (self.price_style == "mixed" and n % 2 == 1)
        return str(amount) if as_string else float(amount)

    def _product(self, p: EmulatedProduct, n: int) -> dict[str, Any]:
        return {
            "product_id": p.id,
            "product_name": p.name,
            "product_price": self._money(p.price, n),
            "product_priceIncludesVat": True,
            "product_vat_id": p.vat_id,
            "product_vat": float(self.vat_rates.get(p.vat_id, Decimal(0))),
            "product_externalReference": p.external_reference,
            "product_itemnumber": p.item_number,
            "product_active": True,
        }

    def _wire(self, i: _Invoice, *, items: bool) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "invoice_id": i.id,
            "invoice_reference_id": i.reference_id,
            "invoice_timestamp": self._local(i.created_at),
            "invoice_number": i.number,
            "invoice_numberFull": i.number_full,
            "invoice_total": float(i.total),
            "invoice_priceBase": "brutto",
            "invoice_deleted_at": None if i.deleted_at is None else self._local(i.deleted_at),
            "invoice_text": i.text,
            "invoice_externalReferenceNumber": i.reference,
            "invoice_paid": True,
            "invoice_testMode": i.test_mode,
            "paymentMethod_id": i.payment_method_id,
            "user_id": i.user_id,
            "dailyReport_id": i.day.id,
        }
        if items:
            wire["items"] = [dict(line) for line in i.items]
        return wire


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
