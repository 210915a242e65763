"""Ready2OrderClient: the account API calls the mirror, ``taptill doctor`` and provisioning use, typed
outcomes, never raising.

Every call is over within ``timeout_s`` seconds (``terminal.ready2order.exchange``); a list of many pages
takes one such budget per page. The client never retries and never waits for the rate limit: the caller
spends its requests (``terminal.outbox.rate_limit``) and settles what may have been applied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from terminal.ready2order.exchange import Ready2OrderHttp, Ready2OrderSession
from terminal.ready2order.outcomes import (
    CancelOutcome,
    Created,
    CreateOutcome,
    DayOpened,
    DayOutcome,
    Failure,
    Listed,
    ListOutcome,
    PaymentMethod,
    Product,
    SearchOutcome,
    Unavailable,
    User,
    VatRate,
)
from terminal.ready2order.parse import (
    Body,
    parse_day_status,
    parse_invoice,
    parse_list,
    parse_payment_method,
    parse_product,
    parse_search,
    parse_user,
    parse_vat_rate,
    read,
)
from terminal.service.secret import Secret

INVOICE_PATH = "/document/invoice"
# The search filters by the bill's own time: the default ("daily_report") filters by the day its daily
# report was opened, which can lie days before the invoice when a day is left open.
SEARCH_DATE_FIELD = "b_dateTime"
PAGE_SIZE = 100
MAX_PAGES = 100  # 10,000 products: more is not a venue's menu but a server that never ends its list


class _Identified(Protocol):
    @property
    def id(self) -> int: ...


Item = TypeVar("Item", bound=_Identified)


class Ready2OrderClient(Ready2OrderSession):
    """One account's API (``Authorization: Bearer <account token>``) over one keep-alive connection."""

    def __init__(
        self,
        base_url: str,
        token: Secret,
        *,
        timeout_s: float = 10.0,
        page_size: int = PAGE_SIZE,
    ) -> None:
        super().__init__(Ready2OrderHttp(base_url, token, "account", timeout_s=timeout_s))
        self.base_url = self._http.base_url
        self.timeout_s = timeout_s
        self.page_size = page_size

    def __repr__(self) -> str:
        return f"Ready2OrderClient({self.base_url!r})"

    def server_time(self) -> float | None:
        """The server's clock now (epoch seconds), from its latest answer; None before the first."""
        return self._http.server_time()

    def use_token(self, token: Secret) -> bool:
        """Send ``token`` from now on (the token file was rewritten); False if it is the same one."""
        return self._http.use_token(token)

    # --- the calls ------------------------------------------------------------------------------------

    async def create_invoice(self, invoice: Mapping[str, object]) -> CreateOutcome:
        """``PUT /document/invoice`` (the public description says POST; both are served): the new invoice.
        ``invoice`` is the request body (amounts as decimal strings, see ``terminal.ready2order.invoice``)."""
        answer = await self._http.call("PUT", INVOICE_PATH, body=invoice, write=True)
        return read(answer, lambda v: Created(parse_invoice(v)), write=True)

    async def search_invoices(
        self,
        query: str,
        *,
        date_from: str,
        date_to: str,
        test_mode: bool,
        offset: int = 0,
        limit: int = 50,
    ) -> SearchOutcome:
        """One page of ``GET /document/invoice`` for ``query`` between two dates (``YYYY-MM-DD``, the
        account's time zone) in the given mode: training invoices are invisible without ``testMode=true``."""
        params = {
            "query": query,
            "dateField": SEARCH_DATE_FIELD,
            "dateFrom": date_from,
            "dateTo": date_to,
            "testMode": "true" if test_mode else "false",
            "offset": str(offset),
            "limit": str(limit),
            "items": "false",
        }
        return read(await self._http.call("GET", INVOICE_PATH, params=params), parse_search, write=False)

    async def cancel_invoice(self, invoice_id: int) -> CancelOutcome:
        """Cancel (storno) an invoice: ``POST /document/invoice/{id}/delete``; the storno document."""
        answer = await self._http.call(
            "POST", f"{INVOICE_PATH}/{int(invoice_id)}/delete", body={}, write=True
        )
        return read(answer, lambda v: Created(parse_invoice(v)), write=True)

    async def products(self) -> ListOutcome[Product]:
        """Every product (``GET /products``, page by page)."""
        return await self._every("/products", parse_product, "products")

    async def payment_methods(self) -> ListOutcome[PaymentMethod]:
        return await self._every("/paymentMethods", parse_payment_method, "payment methods")

    async def vat_rates(self) -> ListOutcome[VatRate]:
        return await self._every("/vat-rates", parse_vat_rate, "VAT rates")

    async def users(self) -> ListOutcome[User]:
        return await self._every("/users", parse_user, "users")

    async def day_status(self) -> DayOutcome:
        """``GET /dailyReport/status``: whether a daily report is open."""
        return read(await self._http.call("GET", "/dailyReport/status"), parse_day_status, write=False)

    async def open_day(self) -> DayOpened | Failure:
        """``PUT /dailyReport/open``: open a daily report (only one can be open)."""
        answer = await self._http.call("PUT", "/dailyReport/open", body={}, write=True)
        return DayOpened() if isinstance(answer, Body) else answer

    # --- lists: the one paging rule -------------------------------------------------------------------

    async def _every(self, path: str, parse: Callable[[object], Item], what: str) -> ListOutcome[Item]:
        """A bare-array list read page by page (``page`` from 1, ``limit``) until a short or empty page, or
        a page with nothing new (a server that ignores ``page``); each item once, by id, in order."""
        items: dict[int, Item] = {}
        for page in range(1, MAX_PAGES + 1):
            params = {"page": str(page), "limit": str(self.page_size)}
            answer = await self._http.call("GET", path, params=params)
            listed = read(answer, lambda v: parse_list(v, parse, what), write=False)
            if not isinstance(listed, tuple):
                return listed
            new = {item.id: item for item in listed if item.id not in items}
            items.update(new)
            if len(listed) < self.page_size or not new:
                return Listed(tuple(items.values()))
        return Unavailable(
            f"GET {path} still had more after {MAX_PAGES} pages of {self.page_size}", maybe_applied=False
        )
