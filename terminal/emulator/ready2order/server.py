"""The ready2order emulator: an HTTP server on loopback with one account, its rate limit and faults.

Requests under ``/v1`` are, in order: faulted (``terminal.emulator.faults``; route kinds below), counted
against the rate limit (429 with the real body, then a block on the emulator's clock), offered to the
grant desk (the provisioning grant flow, ``grant.py``, on the same clock; the account tokens it issues
open the account routes), checked for an account token (none or an unknown one: 401; the developer
token: 403) and answered by the catalog (``catalog.py``) or the account (``account.py``).
``/_emulator/...`` control paths are never faulted or counted (see ``control``).
"""

from __future__ import annotations

import hmac
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from terminal.emulator.clock import EmulatorClock
from terminal.emulator.faults import (
    FaultableHTTPServer,
    FaultConfigError,
    FaultInjector,
    drop_connection,
    run_after_fault,
    run_before_fault,
    send_body,
)
from terminal.emulator.ready2order.account import Account
from terminal.emulator.ready2order.catalog import DEFAULT_PRODUCTS, Catalog, EmulatedProduct, PriceStyle
from terminal.emulator.ready2order.grant import GrantDesk
from terminal.emulator.ready2order.rate_limit import RateWindow, rate_limit_body
from terminal.emulator.ready2order.wire import Answer, api_error, bearer, error_response
from terminal.emulator.serving import LoopbackEmulator
from terminal.emulator.wallet.routes import ApiRequest, ApiResponse, json_response, parse_json

PREFIX = "/v1"
CONTROL_PREFIX = "/_emulator"
MAX_BODY_BYTES = 256 * 1024
DEMO_ACCOUNT_TOKEN = "r2o-demo-account-token"
DEMO_DEVELOPER_TOKEN = "r2o-demo-developer-token"
_INVOICE_ID = re.compile(r"^/document/invoice/(\d{1,12})$")
_CANCEL = re.compile(r"^/document/invoice/(\d{1,12})/delete$")


def route_kind(method: str, path: str) -> str:
    """The route kind fault rules name: invoice_create, invoice_search, invoice_cancel, invoice, products,
    payment_methods, vat_rates, users, daily_report, grant or other."""
    rest = path[len(PREFIX) :] if path.startswith(PREFIX + "/") else ""
    if rest == "/document/invoice":
        return "invoice_search" if method == "GET" else "invoice_create"
    if _CANCEL.match(rest):
        return "invoice_cancel"
    if _INVOICE_ID.match(rest):
        return "invoice"
    simple = {
        "/products": "products",
        "/paymentMethods": "payment_methods",
        "/vat-rates": "vat_rates",
        "/users": "users",
        "/dailyReport/status": "daily_report",
        "/dailyReport/open": "daily_report",
    }
    if rest in simple:
        return simple[rest]
    return "grant" if rest.startswith("/developerToken") else "other"


class Ready2OrderEmulator(LoopbackEmulator):
    """The ready2order API of one account on ``127.0.0.1``; use as a context manager or start()/stop().

    ``rate_limit`` requests per ``rate_window_s`` seconds (the real API: 60 a minute), then every request
    answers 429 for ``block_s`` seconds of ``clock``. ``price_style`` sends product prices as JSON numbers,
    strings, or ``mixed``; ``ignore_paging`` answers every product page with the whole list; ``day_open``
    starts with a daily report open; ``approved_word`` is how an approved grant's status is spelled.
    """

    kind = "ready2order"

    def __init__(
        self,
        *,
        port: int = 0,
        account_token: str = DEMO_ACCOUNT_TOKEN,
        developer_token: str = DEMO_DEVELOPER_TOKEN,
        products: Iterable[EmulatedProduct] = DEFAULT_PRODUCTS,
        payment_methods: Mapping[int, str] | None = None,
        vat_rates: Mapping[int, Decimal] | None = None,
        users: Mapping[int, str] | None = None,
        timezone: str = "Europe/Vienna",
        price_style: PriceStyle = "mixed",
        ignore_paging: bool = False,
        day_open: bool = True,
        approved_word: str = "approved",
        rate_limit: int = 60,
        rate_window_s: float = 60.0,
        block_s: float = 60.0,
        latency: str = "fast",
        seed: int = 0,
        clock: EmulatorClock | None = None,
    ) -> None:
        self.clock = clock or EmulatorClock()
        self.developer_token = developer_token
        self.account_token = account_token
        self._account_tokens = {account_token}
        self._lock = threading.Lock()  # the account tokens and the request counts
        self.catalog = Catalog(
            products=products,
            payment_methods=payment_methods,
            vat_rates=vat_rates,
            users=users,
            price_style=price_style,
            ignore_paging=ignore_paging,
        )
        self.account = Account(self.clock.now, self.catalog, timezone=timezone, day_open=day_open)
        self.rate = RateWindow(self.clock.now, rate_limit, rate_window_s, block_s)
        self.faults = FaultInjector(seed)
        self.faults.set_profile(latency)
        self.grant_desk = GrantDesk(
            self.clock,
            developer_token,
            self.add_account_token,
            approved_word=approved_word,
            is_account_token=self.accepts_account_token,
        )
        self.requests: Counter[str] = Counter()  # "GET /v1/products" → how many arrived (control paths not)
        self._port = port

    # --- lifecycle -------------------------------------------------------------------------------------

    def _bind(self) -> FaultableHTTPServer:
        return FaultableHTTPServer(("127.0.0.1", self._port), _handler_for(self))

    @property
    def base_url(self) -> str:
        """What ``[ready2order] base_url`` is set to."""
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    # --- tokens ------------------------------------------------------------------------------------------

    def add_account_token(self, token: str) -> None:
        """Accept ``token`` as an account token from now on (the grant flow hands out new ones)."""
        with self._lock:
            self._account_tokens.add(token)

    def revoke_account_token(self, token: str) -> None:
        """Answer 401 to ``token`` from now on, as for a revoked grant."""
        with self._lock:
            self._account_tokens.discard(token)

    def accepts_account_token(self, token: str) -> bool:
        """Whether ``token`` opens the account routes now (seeded, or issued by an approved grant)."""
        with self._lock:
            return any(hmac.compare_digest(token.encode(), t.encode()) for t in self._account_tokens)

    def _check_token(self, req: ApiRequest) -> ApiResponse | None:
        given = bearer(req)
        if given is None:
            return error_response(401, "No token given")
        if self.accepts_account_token(given):
            return None
        if hmac.compare_digest(given.encode(), self.developer_token.encode()):
            return error_response(403, "This endpoint needs an account token")
        return error_response(401, "Token is invalid or was revoked")

    # --- inspection -----------------------------------------------------------------------------------

    def invoices(self, *, include_cancelled: bool = True) -> list[dict[str, Any]]:
        return self.account.invoices(include_cancelled=include_cancelled)

    def close_day(self) -> None:
        self.account.set_day(False)

    def open_day(self, opened_at: float | None = None) -> None:
        self.account.set_day(True, opened_at)

    def stats(self) -> dict[str, Any]:
        stats = self.faults.stats()
        stats["rate_limited"] = self.rate.refused
        stats["invoices"] = len(self.account.invoices())
        stats["connections"] = self.connections_accepted
        return stats

    # --- the API ---------------------------------------------------------------------------------------

    def handle(self, req: ApiRequest) -> ApiResponse:
        """Answer one API request (faults are the handler's): rate limit, grant desk, token, route."""
        if not self.rate.admit():
            return json_response(429, rate_limit_body(self.rate.per_minute, self.rate.block_minutes))
        answered = self.grant_desk.handle(req)
        if answered is not None:
            return answered
        if not req.path.startswith(PREFIX + "/"):
            return error_response(404, "Not found")
        refused = self._check_token(req)
        if refused is not None:
            return refused
        status, value = self._route(req, req.path[len(PREFIX) :])
        return json_response(status, value)

    def _route(self, req: ApiRequest, rest: str) -> Answer:
        a, c, method = self.account, self.catalog, req.method
        params = dict(parse_qsl(req.query))
        if rest == "/document/invoice" and method in ("PUT", "POST"):
            body, bad = parse_json(req.body)
            return a.create_invoice(body) if bad is None else api_error(400, "Body is not JSON")
        if rest == "/document/invoice" and method == "GET":
            return a.search(params)
        if (m := _CANCEL.match(rest)) and method == "POST":
            return a.cancel(int(m.group(1)))
        if (m := _INVOICE_ID.match(rest)) and method == "GET":
            return a.get_invoice(int(m.group(1)))
        if rest == "/products" and method == "GET":
            try:
                return c.list_products(int(params.get("page", "1")), int(params.get("limit", "25")))
            except ValueError:
                return api_error(400, "page and limit must be whole numbers")
        if rest == "/paymentMethods" and method == "GET":
            return c.list_payment_methods()
        if rest == "/vat-rates" and method == "GET":
            return c.list_vat_rates()
        if rest == "/users" and method == "GET":
            return c.list_users()
        if rest == "/dailyReport/status" and method == "GET":
            return a.day_status()
        if rest == "/dailyReport/open" and method in ("PUT", "POST"):
            return a.open_day()
        return api_error(404, f"No route {method} {PREFIX}{rest[:60]}")

    def control(self, method: str, path: str, body: bytes) -> ApiResponse:
        """``/_emulator/faults`` (GET/POST/DELETE, as the wallet emulator's), ``/_emulator/stats``,
        ``/_emulator/invoices``, ``POST /_emulator/clock`` ``{"advance": 60}``, ``POST /_emulator/day``
        ``{"open": false}``, and the account owner's side of the grant flow: ``GET /_emulator/grants``
        (the pending grant tokens) and ``POST /_emulator/grants`` ``{"approve": token}`` or
        ``{"deny": token}``."""
        what = path[len(CONTROL_PREFIX) :].strip("/")
        obj, bad = parse_json(body) if method == "POST" else (None, None)
        if bad is not None:
            return bad
        if what == "faults":
            if method == "DELETE":
                self.faults.clear()
            elif method == "POST":
                try:
                    self.faults.configure(obj)
                except FaultConfigError as exc:
                    return json_response(400, {"detail": str(exc)})
            return json_response(200, self.faults.state())
        if what == "stats" and method == "GET":
            return json_response(200, self.stats())
        if what == "invoices" and method == "GET":
            return json_response(200, self.invoices())
        if what == "clock" and method == "POST" and isinstance(obj, dict):
            advance = obj.get("advance")
            if isinstance(advance, int | float) and not isinstance(advance, bool):
                self.clock.advance(float(advance))
                return json_response(200, {"now": self.clock.now()})
        if what == "day" and method == "POST" and isinstance(obj, dict) and isinstance(obj.get("open"), bool):
            self.account.set_day(bool(obj["open"]))
            return json_response(200, {"open": self.account.day_is_open()})
        if what == "grants":
            return self._owner(method, obj)
        return json_response(404, {"detail": f"no control endpoint {method} {path[:60]}"})

    def _owner(self, method: str, obj: object) -> ApiResponse:
        """The account owner approving or denying a grant, as on the approval page."""
        desk = self.grant_desk
        if method == "GET":
            return json_response(200, {"pending": desk.pending()})
        if method == "POST" and isinstance(obj, dict) and len(obj) == 1:
            act, token = next(iter(obj.items()))
            if act in ("approve", "deny") and isinstance(token, str):
                try:
                    if act == "approve":
                        desk.approve(token)  # the account token goes to the terminal by polling only
                    else:
                        desk.deny(token)
                except KeyError:
                    return json_response(404, {"detail": "no such grant"})
                except ValueError as exc:
                    return json_response(409, {"detail": str(exc)})
                return json_response(200, {"pending": desk.pending()})
        return json_response(400, {"detail": 'give {"approve": grant token} or {"deny": grant token}'})

    def note_request(self, method: str, path: str) -> None:
        with self._lock:
            self.requests[f"{method} {path[:100]}"] += 1


def _handler_for(emulator: Ready2OrderEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "Ready2OrderEmulator/1"
        timeout = 60  # idle keep-alive connections are closed after this

        def log_message(self, format: str, *args: object) -> None:
            pass  # the tests and the demo read stats() and invoices(), not an access log

        def do_GET(self) -> None:
            self._dispatch()

        def do_POST(self) -> None:
            self._dispatch()

        def do_PUT(self) -> None:
            self._dispatch()

        def do_DELETE(self) -> None:
            self._dispatch()

        def _dispatch(self) -> None:
            length = self.headers.get("Content-Length", "0")
            size = int(length) if length.isdigit() else -1
            if not 0 <= size <= MAX_BODY_BYTES:
                self.close_connection = True
                send_body(self, 413, b'{"error":true,"msg":"Request too large"}', "application/json")
                return
            body = self.rfile.read(size) if size else b""
            split = urlsplit(self.path)
            if split.path == CONTROL_PREFIX or split.path.startswith(CONTROL_PREFIX + "/"):
                self._send(emulator.control(self.command, split.path, body))
                return
            injector = emulator.faults
            route = route_kind(self.command, split.path)
            injector.count_request(route)
            emulator.note_request(self.command, split.path)
            if injector.down:
                injector.record_down()
                drop_connection(self)
                return
            plan = injector.plan(self.command, route)
            if plan.delay_ms:
                time.sleep(plan.delay_ms / 1000)
            if plan.before is not None:
                run_before_fault(self, plan.before, injector)
                return
            request = ApiRequest(
                method=self.command,
                path=split.path,
                query=split.query,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                origin=f"http://127.0.0.1:{emulator.port}",
            )
            try:
                response = emulator.handle(request)
            except Exception as exc:  # an emulator bug must look like a server error, not kill the thread
                print(f"ready2order emulator: {type(exc).__name__}: {exc}", file=sys.stderr)
                response = json_response(500, {"error": True, "msg": "Internal Server Error"})
            try:
                if plan.after is not None:
                    run_after_fault(
                        self,
                        plan.after,
                        injector,
                        response.status,
                        response.body,
                        response.content_type,
                        response.headers,
                    )
                else:
                    self._send(response)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (its deadline); what was applied stays

        def _send(self, response: ApiResponse) -> None:
            send_body(self, response.status, response.body, response.content_type, response.headers)

    return Handler
