"""One emulated ready2order account's changing state: its daily reports and invoices, behind one lock.

The server (``server.py``) turns its (status, JSON) answers into HTTP; the catalog (``catalog.py``) holds
what does not change, the invoice rules (numbering, lines, search windows, wire form) are ``invoices.py``.
An invoice needs an open daily report (400 otherwise); a search's ``query`` matches the invoice number or
the external reference (case-insensitive, a part is enough) and lists newest first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from terminal.emulator.ready2order.catalog import MAX_PAGE, Catalog
from terminal.emulator.ready2order.invoices import (
    CENT,
    DATE_FIELDS,
    BilledInvoice,
    Day,
    bill_line,
    is_int,
    local_time,
    window_bound,
    wire,
    within,
)
from terminal.emulator.ready2order.wire import Answer, api_error

NO_DAY = "There is no open daily report; open one before billing"


class Account:
    """The account's daily reports and invoices; every public method takes the lock and answers
    (status, JSON value), or (the inspection methods) plain values."""

    def __init__(
        self,
        now: Callable[[], float],
        catalog: Catalog,
        *,
        timezone: str = "Europe/Vienna",
        day_open: bool = True,
    ) -> None:
        self.now = now
        self.catalog = catalog
        self.tz = ZoneInfo(timezone)
        self._lock = threading.Lock()
        self._days: list[Day] = []
        self._invoices: list[BilledInvoice] = []
        self._numbers: dict[tuple[int, bool], int] = {}
        if day_open:
            self._days.append(Day(1, now()))

    # --- inspection (tests, the demo, the control endpoints) --------------------------------------------

    def invoices(self, *, include_cancelled: bool = True) -> list[dict[str, Any]]:
        """Every invoice as the API shows it (stornos included), oldest first."""
        with self._lock:
            return [
                wire(i, self.tz, items=True)
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
                self._days.append(Day(len(self._days) + 1, self.now() if opened_at is None else opened_at))
            elif open_ and day is not None and opened_at is not None:
                day.opened_at = opened_at

    # --- the daily report -------------------------------------------------------------------------------

    def day_status(self) -> Answer:
        with self._lock:
            day = self._open_day()
            if day is None:
                return 200, {"status": "closed"}
            return 200, {
                "status": "open",
                "dailyReport_id": day.id,
                "dailyReport_startDate": local_time(day.opened_at, self.tz),
            }

    def open_day(self) -> Answer:
        with self._lock:
            if self._open_day() is not None:
                return api_error(400, "A daily report is already open", "dailyReportAlreadyOpen")
            day = Day(len(self._days) + 1, self.now())
            self._days.append(day)
            return 200, {"status": "open", "dailyReport_id": day.id}

    # --- invoices -----------------------------------------------------------------------------------------

    def create_invoice(self, body: object) -> Answer:
        if not isinstance(body, dict):
            return api_error(400, "The request body must be a JSON object")
        pm, user = body.get("paymentMethod_id"), body.get("user_id")
        if not is_int(pm) or pm not in self.catalog.payment_methods:
            return api_error(400, f"paymentMethod_id {str(pm)[:20]} is not a payment method of this account")
        if not is_int(user) or user not in self.catalog.users:
            return api_error(400, f"user_id {str(user)[:20]} is not a user of this account")
        items = body.get("items")
        if not isinstance(items, list) or not items:
            return api_error(400, "items must be a non-empty list")
        net_base = str(body.get("invoice_priceBase", "gross")).lower() in ("net", "netto")
        lines: list[dict[str, Any]] = []
        total = Decimal(0)
        for n, item in enumerate(items):
            line = bill_line(item, n, net_base, self.catalog)
            if isinstance(line, tuple):
                return line
            lines.append(line)
            total += Decimal(line["item_total"])
        reference = body.get("invoice_externalReferenceNumber")
        if reference is not None and not isinstance(reference, str):
            return api_error(400, "invoice_externalReferenceNumber must be a string")
        test_mode = body.get("invoice_testMode", False)
        if not isinstance(test_mode, bool):
            return api_error(400, "invoice_testMode must be true or false")
        text = body.get("invoice_text")
        with self._lock:
            day = self._open_day()
            if day is None:
                return api_error(400, NO_DAY, "noDailyReport")
            invoice = self._append(
                day, total, test_mode, reference, text if isinstance(text, str) else None, pm, user, lines
            )
            return 200, wire(invoice, self.tz, items=True)

    def search(self, params: Mapping[str, str]) -> Answer:
        try:
            offset = int(params.get("offset", "0"))
            limit = int(params.get("limit", "50"))
        except ValueError:
            return api_error(400, "offset and limit must be whole numbers")
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            return api_error(400, f"offset must be 0 or more and limit between 1 and {MAX_PAGE}")
        test_mode = params.get("testMode", "false").lower() in ("true", "1")
        field = params.get("dateField", "daily_report")
        if field not in DATE_FIELDS:
            return api_error(400, f"dateField {field[:20]!r} is none of {', '.join(DATE_FIELDS)}")
        try:
            start = window_bound(params.get("dateFrom"), self.tz, end=False)
            stop = window_bound(params.get("dateTo"), self.tz, end=True)
        except ValueError as exc:
            return api_error(400, str(exc))
        query = params.get("query", "").strip().lower()
        with self._lock:
            found = [
                i
                for i in reversed(self._invoices)
                if i.test_mode == test_mode
                and (not query or query in i.number_full.lower() or query in (i.reference or "").lower())
                and within(i, field, start, stop)
            ]
            items = params.get("items", "false").lower() in ("true", "1")
            page = [wire(i, self.tz, items=items) for i in found[offset : offset + limit]]
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
                return api_error(404, f"Invoice {invoice_id} not found")
            return 200, wire(invoice, self.tz, items=True)

    def cancel(self, invoice_id: int) -> Answer:
        """Storno: the original is marked cancelled and a negative document refers to it."""
        with self._lock:
            original = self._find(invoice_id)
            if original is None:
                return api_error(404, f"Invoice {invoice_id} not found")
            if original.deleted_at is not None or original.reference_id is not None:
                return api_error(
                    400, f"Invoice {invoice_id} cannot be cancelled (cancelled already or a storno)"
                )
            day = self._open_day()
            if day is None:
                return api_error(400, NO_DAY, "noDailyReport")
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
            return 200, wire(storno, self.tz, items=True)

    # --- inside the lock ------------------------------------------------------------------------------

    def _open_day(self) -> Day | None:
        return next((d for d in reversed(self._days) if d.closed_at is None), None)

    def _find(self, invoice_id: int) -> BilledInvoice | None:
        return next((i for i in self._invoices if i.id == invoice_id), None)

    def _append(
        self,
        day: Day,
        total: Decimal,
        test_mode: bool,
        reference: str | None,
        text: str | None,
        payment_method_id: int,
        user_id: int,
        lines: list[dict[str, Any]],
    ) -> BilledInvoice:
        now = self.now()
        year = datetime.fromtimestamp(now, self.tz).year
        key = (year, test_mode)
        self._numbers[key] = self._numbers.get(key, 0) + 1
        number = self._numbers[key]
        invoice = BilledInvoice(
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
