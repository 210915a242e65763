"""Ready2OrderClient: the account API calls the mirror and provisioning use, typed outcomes, never raising.

Every call is over within ``timeout_s`` seconds (connect, send, headers, the whole body), whatever pace the
server sends at (``terminal.net.deadline``). The client never retries and never waits for the rate limit:
the caller spends its requests (``terminal.outbox.rate_limit``) and settles what may have been applied.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from types import TracebackType

import httpx

from terminal.model import printable
from terminal.net.deadline import Deadline, SendWatch
from terminal.net.transport import new_client, read_capped
from terminal.ready2order.outcomes import (
    CancelOutcome,
    Created,
    CreateOutcome,
    DayOpened,
    DayOutcome,
    Failure,
    Listed,
    PaymentMethodsOutcome,
    ProductsOutcome,
    SearchOutcome,
    Unavailable,
    VatRatesOutcome,
)
from terminal.ready2order.parse import (
    MAX_BODY_BYTES,
    Body,
    interpret,
    parse_day_status,
    parse_invoice,
    parse_list,
    parse_payment_method,
    parse_product,
    parse_search,
    parse_vat_rate,
    read,
)
from terminal.service.secret import Secret

CONNECT_TIMEOUT_S = 3.0
USER_AGENT = "taptill-ready2order/0.1"
INVOICE_PATH = "/document/invoice"
# The search filters by the bill's own time: the default ("daily_report") filters by the day its daily
# report was opened, which can lie days before the invoice when a day is left open.
SEARCH_DATE_FIELD = "b_dateTime"


class Ready2OrderClient:
    """One account's API over one pooled keep-alive connection (``Authorization: Bearer <account token>``)."""

    def __init__(
        self,
        base_url: str,
        token: Secret,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._token = token
        self._server_date: tuple[float, float] | None = None  # (epoch the server said, monotonic then)
        self._http = new_client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S)),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=30.0),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"Ready2OrderClient({self.base_url!r})"

    async def __aenter__(self) -> Ready2OrderClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def server_time(self) -> float | None:
        """The server's clock now (epoch seconds), from the Date header of its latest answer; None before
        the first. Whole seconds: good for a date window, not for ordering."""
        if self._server_date is None:
            return None
        said, at = self._server_date
        return said + (time.monotonic() - at)

    def _note_date(self, header: str | None) -> None:
        try:
            when = email.utils.parsedate_to_datetime(header) if header else None
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        if when is not None and when.tzinfo is not None:
            self._server_date = (when.timestamp(), time.monotonic())

    def use_token(self, token: Secret) -> bool:
        """Send ``token`` from now on (the token file was rewritten); False if it is the same one."""
        if token == self._token:
            return False
        self._token = token
        return True

    # --- the calls ------------------------------------------------------------------------------------

    async def create_invoice(self, invoice: Mapping[str, object]) -> CreateOutcome:
        """``PUT /document/invoice`` (the public description says POST; both are served): the new invoice.
        ``invoice`` is the request body (amounts as decimal strings, see ``terminal.ready2order.invoice``)."""
        answer = await self._call("PUT", INVOICE_PATH, body=invoice, write=True)
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
        return read(await self._call("GET", INVOICE_PATH, params=params), parse_search, write=False)

    async def cancel_invoice(self, invoice_id: int) -> CancelOutcome:
        """Cancel (storno) an invoice: ``POST /document/invoice/{id}/delete``; the storno document."""
        answer = await self._call("POST", f"{INVOICE_PATH}/{int(invoice_id)}/delete", body={}, write=True)
        return read(answer, lambda v: Created(parse_invoice(v)), write=True)

    async def products(self, page: int = 1, limit: int = 100) -> ProductsOutcome:
        """One page of ``GET /products`` (a bare array; the list ends on a short or empty page)."""
        params = {"page": str(page), "limit": str(limit)}
        answer = await self._call("GET", "/products", params=params)
        return read(answer, lambda v: Listed(parse_list(v, parse_product, "products")), write=False)

    async def payment_methods(self) -> PaymentMethodsOutcome:
        answer = await self._call("GET", "/paymentMethods")
        return read(
            answer, lambda v: Listed(parse_list(v, parse_payment_method, "payment methods")), write=False
        )

    async def vat_rates(self) -> VatRatesOutcome:
        answer = await self._call("GET", "/vat-rates")
        return read(answer, lambda v: Listed(parse_list(v, parse_vat_rate, "VAT rates")), write=False)

    async def day_status(self) -> DayOutcome:
        """``GET /dailyReport/status``: whether a daily report is open."""
        return read(await self._call("GET", "/dailyReport/status"), parse_day_status, write=False)

    async def open_day(self) -> DayOpened | Failure:
        """``PUT /dailyReport/open``: open a daily report (only one can be open)."""
        answer = await self._call("PUT", "/dailyReport/open", body={}, write=True)
        return DayOpened() if isinstance(answer, Body) else answer

    # --- one exchange ---------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, object] | None = None,
        write: bool = False,
    ) -> Body | Failure:
        headers = {"Authorization": f"Bearer {self._token.reveal()}"}
        content: bytes | None = None
        if body is not None:
            content = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        deadline = Deadline.after(self.timeout_s)
        watch = SendWatch()
        status: int | None = None
        content_type = ""
        retry_after: str | None = None
        data = b""
        problem: str | None = None
        try:
            async with deadline.scope():
                request = self._http.build_request(
                    method,
                    self.base_url + path,
                    params=params,
                    headers=headers,
                    content=content,
                    timeout=deadline.httpx_timeout(CONNECT_TIMEOUT_S),
                    extensions=watch.extensions,
                )
                response = await self._http.send(request, stream=True)
                try:
                    status = response.status_code
                    content_type = response.headers.get("content-type", "")
                    retry_after = response.headers.get("retry-after")
                    self._note_date(response.headers.get("date"))
                    try:
                        raw = await read_capped(response, MAX_BODY_BYTES)
                        data, problem = raw.data, raw.problem
                    except httpx.HTTPError as exc:
                        problem = f"the answer broke off ({_describe(exc)})"
                finally:
                    await response.aclose()
        except TimeoutError:
            if status is None:
                return Unavailable(deadline.describe(), maybe_applied=write and watch.may_have_arrived)
            problem = f"body not complete within {self.timeout_s:g} s"
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The request never left this machine: nothing can have been created.
            return Unavailable(f"cannot connect to ready2order ({_describe(exc)})", maybe_applied=False)
        except httpx.HTTPError as exc:
            if status is None:
                return Unavailable(
                    f"no answer from ready2order ({_describe(exc)})",
                    maybe_applied=write and watch.may_have_arrived,
                )
            problem = f"the answer broke off ({_describe(exc)})"
        assert status is not None
        return interpret(status, content_type, data, write=write, problem=problem, retry_after=retry_after)


def _describe(exc: BaseException) -> str:
    # httpx messages name the host and the OS error, never headers, so they carry no token.
    text = printable(str(exc), 200) if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
