"""A stand-in ready2order server on loopback for the grant tests: the real GrantDesk, plus the account
lists (payment methods, VAT rates, users, products paged as bare arrays) behind the account token.

Only until the full emulator (terminal/emulator/ready2order/server.py) lands; it answers with the shared
fault injector, so a test can add realistic latency (``latency="real"``), drops or a dead server.
"""

from __future__ import annotations

import threading
import time
import types
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from terminal.emulator.clock import EmulatorClock
from terminal.emulator.faults import (
    FaultableHTTPServer,
    FaultInjector,
    drop_connection,
    run_after_fault,
    run_before_fault,
    send_body,
)
from terminal.emulator.ready2order.grant import GrantDesk, error
from terminal.emulator.wallet.routes import ApiRequest, ApiResponse, json_response

DEVELOPER_TOKEN = "r2o-developer-token-4f1c2b"
SEEDED_ACCOUNT_TOKEN = "r2o-seeded-account-token-9a8b7c"

PAYMENT_METHODS: list[dict[str, object]] = [
    {"payment_id": 74890, "payment_name": "Barzahlung", "payment_markAsPaid": True, "paymentType_id": 1},
    {"payment_id": 74891, "payment_name": "Wallet", "payment_markAsPaid": True, "paymentType_id": 1},
]
VAT_RATES: list[dict[str, object]] = [
    {"id": 1, "value": 20, "name": "Normal"},
    {"id": 2, "value": "10", "name": "Ermäßigt"},
    {"id": 3, "value": 0, "name": "Steuerfrei"},
]
USERS: list[dict[str, object]] = [
    {"user_id": 5678, "user_firstName": "Christoph", "user_lastName": "Müller", "user_username": "c@x.at"},
]


def product(
    pid: int,
    name: str,
    price: object,
    *,
    vat_id: int | None = 1,
    vat: object = None,
    item_number: object = None,
    external_reference: str | None = None,
) -> dict[str, object]:
    """One product as GET /v1/products lists it (prices as numbers or strings, euros)."""
    return {
        "product_id": pid,
        "product_name": name,
        "product_price": price,
        "product_vat_id": vat_id,
        "product_vat": vat,
        "product_itemnumber": item_number,
        "product_externalReference": external_reference,
        "product_priceIncludesVat": True,
        "product_active": True,
    }


class GrantLab:
    """The stand-in server; use as a context manager. ``base_url`` ends in ``/v1`` like the real one."""

    def __init__(
        self,
        *,
        products: Sequence[dict[str, object]] = (),
        payment_methods: Sequence[dict[str, object]] = tuple(PAYMENT_METHODS),
        vat_rates: Sequence[dict[str, object]] = tuple(VAT_RATES),
        users: Sequence[dict[str, object]] = tuple(USERS),
        approved_word: str = "approved",
        latency: str = "fast",
        paging: bool = True,
    ) -> None:
        self.clock = EmulatorClock()
        self.paging = paging  # False: every page answers the whole list, as a server that ignores ``page``
        self.lists: dict[str, list[dict[str, object]]] = {
            "/v1/paymentMethods": list(payment_methods),
            "/v1/vat-rates": list(vat_rates),
            "/v1/users": list(users),
            "/v1/products": list(products),
        }
        self._lock = threading.Lock()
        self._account_tokens = {SEEDED_ACCOUNT_TOKEN}
        self.desk = GrantDesk(
            self.clock,
            DEVELOPER_TOKEN,
            self._add_account_token,
            approved_word=approved_word,
            is_account_token=self.is_account_token,
        )
        self.faults = FaultInjector()
        self.faults.set_profile(latency)
        self.requests: Counter[str] = Counter()  # "GET /v1/products" → count
        self._server: _LabServer | None = None
        self._thread: threading.Thread | None = None

    # -- tokens ----------------------------------------------------------------------------------------

    def _add_account_token(self, token: str) -> None:
        with self._lock:
            self._account_tokens.add(token)

    def is_account_token(self, token: str) -> bool:
        with self._lock:
            return token in self._account_tokens

    def revoke(self, token: str) -> None:
        """The owner removes the integration: the account token answers 401 from now on."""
        with self._lock:
            self._account_tokens.discard(token)

    # -- HTTP ------------------------------------------------------------------------------------------

    def handle(self, req: ApiRequest) -> ApiResponse:
        self.requests[f"{req.method} {req.path}"] += 1
        answer = self.desk.handle(req)
        if answer is not None:
            return answer
        listed = self.lists.get(req.path.rstrip("/"))
        if listed is None:
            return error(404, "Not found")
        scheme, _, given = req.headers.get("authorization", "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return error(401, "Missing or malformed Authorization header")
        if given == DEVELOPER_TOKEN:
            return error(403, "This endpoint needs an account token, not a developer token")
        if not self.is_account_token(given):
            return error(401, "Invalid token")
        if not self.paging:
            return json_response(200, listed)
        query = parse_qs(req.query)
        page = int(query.get("page", ["1"])[0])
        limit = int(query.get("limit", ["25"])[0])
        return json_response(200, listed[(page - 1) * limit : page * limit])

    def route_kind(self, path: str) -> str:
        return "grant" if "/developerToken/" in path else "account"

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> GrantLab:
        server = _LabServer(("127.0.0.1", 0), _LabHandler)
        server.lab = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.faults.clear()
        server.shutdown()
        server.close_all_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> GrantLab:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def wait_for_pending(self, count: int = 1, timeout_s: float = 30.0) -> str:
        """The newest pending grant once ``count`` grants were made (a client asked); fails at the timeout."""
        stop = time.monotonic() + timeout_s
        while time.monotonic() < stop:
            pending = self.desk.pending()
            if self.desk.grants_made >= count and pending:
                return pending[-1]
            time.sleep(0.02)
        raise AssertionError(f"no pending grant #{count} within {timeout_s} s ({self.desk.grants_made} made)")


class _LabServer(FaultableHTTPServer):
    lab: GrantLab


class _LabHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        lab = cast(_LabServer, self.server).lab
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 64 * 1024)) if length > 0 else b""
        route = lab.route_kind(split.path)
        lab.faults.count_request(route)
        if lab.faults.down:
            lab.faults.record_down()
            drop_connection(self)
            return
        plan = lab.faults.plan(self.command, route)
        if plan.delay_ms:
            time.sleep(plan.delay_ms / 1000)
        if plan.before is not None:
            run_before_fault(self, plan.before, lab.faults)
            return
        request = ApiRequest(
            method=self.command,
            path=split.path,
            query=split.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            origin=f"http://{self.headers.get('Host', '127.0.0.1')}",
        )
        response = lab.handle(request)
        if plan.after is not None:
            run_after_fault(
                self, plan.after, lab.faults, response.status, response.body, response.content_type, {}
            )
            return
        send_body(self, response.status, response.body, response.content_type, response.headers)
