"""A local HTTP emulator of the pretix wallet PointOfSale API, as documented (`doc`) or as deployed (`real`).

Flavours:

* ``doc`` follows ``seeds/001_ef589e3b5077575a.txt`` exactly: ``{"data": ...}`` wrappers, a terminal object
  with string product ids, Bearer auth, 404 for unknown tokens, idempotency keys answered with 202, top-ups as
  negative-priced products gated by the terminal's permission (403 otherwise). Trailing slashes are optional.
  The document lists 400 for invalid parameters but no code for a debit larger than the balance; this
  emulator refuses such a debit with 400 ``{"detail": "Insufficient balance"}`` and moves no money.
* ``real`` reproduces ``WALLET-SERVER-NOTES.md``: trailing slashes required (GET 301, POST HTML 404), a
  paginated product list, flat wallet objects, integer product ids (``true``/``1.9`` coerced to 1),
  idempotency keys ignored, no balance check, no permissions, 500 HTML for unknown tokens on POST, 406/415
  content negotiation and the exact 401 bodies. Balances are reported as the plugin computes them: the
  wallet's value is a float sum of euros (the balance last set, then every transaction in order) and the
  API shows ``int(Decimal(value) * 100)``, truncated, so a wallet holding exactly 1.20 reads 119 and a
  wallet of 5.00 reads 379 after a 1.20 debit (it holds 3.80). The notes' 7960 -> 7839 cannot come from
  one 1.20 debit under this rule (no float sum that reads 7960 reads 7839 less 1.20); 500 -> 379 shows
  the same move by 121. The ledger keeps the exact cents (``WalletEmulator.balance``);
  ``WalletEmulator.reported_balance`` is what the API shows. Products that are listed but in no pretix
  quota (``unsellable`` item ids, a constructor argument, switchable at run time) stay in the product
  list and GETs keep working, but every POST containing one answers 500 with an HTML page and charges
  nothing.

Both keep a ``WalletLedger`` (optionally persisted; it records description, tag and idempotency key of
every applied transaction even in ``real``, where the server validates them but stores nothing) and
honour a ``FaultInjector`` driven from Python or from the control endpoints under ``/_emulator``
(never faulted): ``GET/POST/DELETE /_emulator/faults`` (``{"profile": "real"}`` there switches to a
real server's answer times), ``GET /_emulator/ledger``, ``GET/DELETE /_emulator/stats``,
``POST /_emulator/wallets``, ``POST /_emulator/token`` (``{"revoked": true}`` answers 401 to every API
request as for a revoked token, ``false`` accepts it again), ``GET /_emulator/products`` and (``real``
only) ``POST /_emulator/products`` with ``{"unsellable": [3]}`` to set the item ids in no quota.

Run ``python -m terminal.emulator.wallet_server --flavour real --demo``: it prints one JSON line
(``base_url``, ``api_token``, ``control_url``) once listening and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import re
import sys
import threading
import time
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import parse_qs, unquote, urlsplit

from terminal.emulator.faults import (
    FaultableHTTPServer,
    FaultConfigError,
    FaultInjector,
    drop_connection,
    run_after_fault,
    run_before_fault,
    send_body,
)
from terminal.emulator.serving import tcp_port, wait_for_stop_signal
from terminal.emulator.wallet.ledger import LedgerError, LedgerTransaction, LedgerWallet, WalletLedger

Flavour = Literal["doc", "real"]
FLAVOURS: tuple[Flavour, ...] = ("doc", "real")
DEFAULT_PREFIX = "/api/v1/organizers/demo/events/demo/wallet"
DEFAULT_API_TOKEN = "taptill-demo-api-token"
CONTROL_PREFIX = "/_emulator"
PAGE_SIZE = 50
MAX_BODY_BYTES = 1_000_000
REAL_SERVER_OFFSET = timezone(timedelta(hours=1))

ProductSpec = tuple[str | int, str, int]  # (id, name, price in cents; negative = top-up)

DEMO_PRODUCTS_DOC: tuple[ProductSpec, ...] = (
    ("espresso", "Espresso", 250),
    ("cappuccino", "Cappuccino", 300),
    ("latte", "Latte Macchiato", 350),
    ("water", "Wasser", 150),
    ("topup_10", "Aufladung 10 €", -1000),
    ("topup_20", "Aufladung 20 €", -2000),
)
DEMO_PRODUCTS_REAL: tuple[ProductSpec, ...] = (
    (1, "Espresso", 250),
    (2, "Cappuccino", 300),
    (3, "Latte Macchiato", 350),
    (4, "Wasser", 150),
)
DEMO_WALLETS: dict[str, tuple[int, str]] = {
    "04A1B2C3D4E5F6": (2000, "Max Mustermann"),
    "0455667788AABB": (500, "Erika Musterfrau"),
    "DEADBEEF": (100, ""),
    "04000000000001": (0, ""),
}


# -- requests and responses ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP request as the API flavours see it; header names are lower case."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    origin: str  # "http://host:port", for absolute links


@dataclass
class ApiResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, obj: object, headers: dict[str, str] | None = None) -> ApiResponse:
    return ApiResponse(status, json.dumps(obj).encode(), "application/json", dict(headers or {}))


def html_response(status: int, title: str, text: str) -> ApiResponse:
    page = (
        f'<!doctype html>\n<html lang="en"><head><title>{title}</title></head>'
        f"<body><h1>{title}</h1><p>{text}</p></body></html>\n"
    )
    return ApiResponse(status, page.encode(), "text/html; charset=utf-8")


def _not_allowed(method: str, allowed: str) -> ApiResponse:
    return json_response(405, {"detail": f'Method "{method}" not allowed.'}, {"Allow": allowed})


def _parse_json(body: bytes) -> tuple[object, ApiResponse | None]:
    def refuse_constant(name: str) -> object:
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(body.decode("utf-8"), parse_constant=refuse_constant), None
    except (UnicodeDecodeError, ValueError) as exc:
        return None, json_response(400, {"detail": f"JSON parse error - {exc}"})


def _check_bearer(
    req: ApiRequest, api_token: str, invalid_detail: str, *, revoked: bool = False
) -> ApiResponse | None:
    """401 unless the request carries ``api_token``; a ``revoked`` token is answered as a wrong one."""
    challenge = {"WWW-Authenticate": 'Bearer realm="api"'}
    header = req.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return json_response(401, {"detail": "Authentication credentials were not provided."}, challenge)
    if revoked or not hmac.compare_digest(given.strip().encode(), api_token.encode()):
        return json_response(401, {"detail": invalid_detail}, challenge)
    return None


def _accepts_json(accept: str | None) -> bool:
    if not accept:
        return True
    media_types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(media_types & {"*/*", "application/*", "application/json", ""})


# -- routes ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A matched API path: ``kind`` is "terminal", "wallet" or "transaction"."""

    kind: str
    token: str | None
    slash: bool


_TERMINAL_PATH = re.compile(r"^/pos/terminal(?P<slash>/?)$")
_WALLET_PATH = re.compile(r"^/pos/wallets/token/(?P<token>[^/]+)(?P<tx>/transactions)?(?P<slash>/?)$")


def match_route(rest: str) -> Route | None:
    if m := _TERMINAL_PATH.match(rest):
        return Route("terminal", None, bool(m["slash"]))
    if m := _WALLET_PATH.match(rest):
        return Route("transaction" if m["tx"] else "wallet", unquote(m["token"]), bool(m["slash"]))
    return None


class ApiPrefix:
    """Matches the configured prefix; organizer and event slugs match any value, so a wrong slug is seen."""

    def __init__(self, prefix: str) -> None:
        self.text = prefix.rstrip("/")
        segments = self.text.split("/")
        parts = [
            "[^/]+" if i > 0 and segments[i - 1] in ("organizers", "events") else re.escape(seg)
            for i, seg in enumerate(segments)
        ]
        self._pattern = re.compile("^" + "/".join(parts) + "(?P<rest>/.*)?$")

    def split(self, path: str) -> tuple[str, bool] | None:
        """Return (path after the prefix, whether the slugs are exactly the configured ones)."""
        m = self._pattern.match(path)
        if m is None:
            return None
        rest = m["rest"] or ""
        return rest, path[: len(path) - len(rest)] == self.text

    def route_kind(self, path: str) -> str:
        split = self.split(path)
        route = match_route(split[0]) if split else None
        return route.kind if route else "other"


# -- the two flavours ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmulatorSettings:
    prefix: str
    api_token: str
    terminal_id: str
    friendly_name: str
    permission: str
    products: tuple[ProductSpec, ...]
    seed: int


class DocWalletApi:
    """The wallet API exactly as the document describes it."""

    def __init__(self, settings: EmulatorSettings, ledger: WalletLedger) -> None:
        for pid, _, _ in settings.products:
            if not isinstance(pid, str):
                raise ValueError(f"doc flavour product id {pid!r} must be a string, like 'espresso'")
        self._s = settings
        self._ledger = ledger
        self.token_revoked = False  # the organizer revoked the terminal's token (WalletEmulator.revoke_token)
        self._prefix = ApiPrefix(settings.prefix)
        self._prices: dict[str, int] = {str(pid): price for pid, _, price in settings.products}

    def handle(self, req: ApiRequest) -> ApiResponse:
        split = self._prefix.split(req.path)
        route = match_route(split[0]) if split and split[1] else None
        if route is None:
            return json_response(404, {"detail": "Not found."})
        denied = _check_bearer(req, self._s.api_token, "Invalid token.", revoked=self.token_revoked)
        if denied is not None:
            return denied
        if route.kind == "terminal":
            return self._terminal() if req.method == "GET" else _not_allowed(req.method, "GET")
        assert route.token is not None
        if route.kind == "wallet":
            return self._wallet(route.token) if req.method == "GET" else _not_allowed(req.method, "GET")
        return self._transact(req, route.token) if req.method == "POST" else _not_allowed(req.method, "POST")

    def _terminal(self) -> ApiResponse:
        products = [
            {"id": pid, "friendly_name": name, "price": price} for pid, name, price in self._s.products
        ]
        terminal = {
            "id": self._s.terminal_id,
            "friendly_name": self._s.friendly_name,
            "permission": self._s.permission,
            "products": products,
        }
        return json_response(200, {"data": terminal})

    def _wallet(self, token: str) -> ApiResponse:
        wallet = self._ledger.wallet(token)
        if wallet is None:
            return json_response(404, {"detail": "This token is not paired to a wallet."})
        return json_response(200, {"data": self.wallet_json(wallet)})

    def wallet_json(self, wallet: LedgerWallet) -> dict[str, Any]:
        digest = hashlib.sha256(f"{self._s.seed}:{wallet.id}".encode()).hexdigest()[:16]
        created = datetime.fromisoformat(wallet.created_at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {
            "id": f"wal_{digest}",
            "token_id": wallet.token_id,
            "created_at": created,
            "balance": wallet.balance,
            "paired_user": wallet.paired_user or None,
        }

    def _transact(self, req: ApiRequest, token: str) -> ApiResponse:
        if self._ledger.wallet(token) is None:
            return json_response(404, {"detail": "This token is not paired to a wallet."})
        body, bad_json = _parse_json(req.body)
        if bad_json is not None:
            return bad_json
        if not isinstance(body, dict):
            return json_response(400, {"non_field_errors": ["The request body must be a JSON object."]})
        errors: dict[str, list[str]] = {}
        products = self._products(body, errors)
        description = _doc_string(body, "description", errors, required=True, nullable=False)
        tag = _doc_string(body, "tag", errors, required=False, nullable=True)
        key = _doc_string(body, "idempotency_key", errors, required=False, nullable=True)
        if key == "":
            errors.setdefault("idempotency_key", []).append("This field may not be blank.")
        if errors:
            return json_response(400, errors)
        prices = [self._prices[p] for p in products]
        with self._ledger.lock:
            wallet = self._ledger.wallet(token)
            assert wallet is not None  # wallets are never deleted
            if key and self._ledger.transaction_with_key(key) is not None:
                return json_response(202, {"data": self.wallet_json(wallet)})
            if not self._permits(prices):
                refusal = f"Terminal permission {self._s.permission!r} does not allow this transaction."
                return json_response(403, {"detail": refusal})
            amount = -sum(prices)
            if amount < 0 and wallet.balance + amount < 0:
                return json_response(400, {"detail": "Insufficient balance"})
            wallet, _ = self._ledger.apply(
                token,
                amount,
                list(products),
                description=description,
                tag=tag,
                idempotency_key=key,
                terminal=self._s.terminal_id,
            )
        return json_response(201, {"data": self.wallet_json(wallet)})

    def _products(self, body: dict[str, Any], errors: dict[str, list[str]]) -> list[str]:
        raw = body.get("products")
        if "products" not in body:
            errors["products"] = ["This field is required."]
        elif not isinstance(raw, list):
            errors["products"] = ["Expected a list of product ids."]
        elif not raw:
            errors["products"] = ["At least one product is required."]
        else:
            problems = []
            for item in raw:
                if not isinstance(item, str):
                    problems.append(f"Product ids are strings; got {json.dumps(item)}.")
                elif item not in self._prices:
                    problems.append(f"Unknown product {item!r}.")
            if problems:
                errors["products"] = problems
            else:
                return [str(item) for item in raw]
        return []

    def _permits(self, prices: list[int]) -> bool:
        permission = self._s.permission
        if permission == "all":
            return True
        if permission == "debit":
            return all(price >= 0 for price in prices)
        return all(price <= 0 for price in prices)  # credit


def _doc_string(
    body: dict[str, Any], name: str, errors: dict[str, list[str]], *, required: bool, nullable: bool
) -> str | None:
    if name not in body:
        if required:
            errors[name] = ["This field is required."]
        return None
    value = body[name]
    if value is None:
        if not nullable:
            errors[name] = ["This field may not be null."]
        return None
    if not isinstance(value, str):
        errors[name] = ["Not a valid string."]
        return None
    return value


class RealWalletApi:
    """The wallet API as the pretix wallet plugin really behaves (WALLET-SERVER-NOTES.md)."""

    def __init__(self, settings: EmulatorSettings, ledger: WalletLedger) -> None:
        for pid, _, _ in settings.products:
            if not isinstance(pid, int) or isinstance(pid, bool):
                raise ValueError(f"real flavour product id {pid!r} must be an integer pretix item id")
        self._s = settings
        self._ledger = ledger
        self.token_revoked = False  # the organizer revoked the terminal's token (WalletEmulator.revoke_token)
        self._prefix = ApiPrefix(settings.prefix)
        self._prices: dict[int, int] = {int(pid): price for pid, _, price in settings.products}
        self._unsellable: frozenset[int] = frozenset()

    @property
    def unsellable(self) -> frozenset[int]:
        return self._unsellable

    def set_unsellable(self, item_ids: Iterable[object]) -> frozenset[int]:
        """Put these listed item ids in no quota (replacing the earlier set); ValueError names a bad id."""
        ids: set[int] = set()
        for item in item_ids:
            if not isinstance(item, int) or isinstance(item, bool) or item not in self._prices:
                listed = sorted(self._prices)
                raise ValueError(f"unsellable item {item!r} is not a listed product id; use one of {listed}")
            ids.add(item)
        with self._ledger.lock:  # a POST checks and books under this lock: it sees the old set or the new
            self._unsellable = frozenset(ids)
        return self._unsellable

    def handle(self, req: ApiRequest) -> ApiResponse:
        split = self._prefix.split(req.path)
        route = match_route(split[0]) if split else None
        if split is None or route is None:
            return html_response(404, "Not Found", "The requested resource was not found on this server.")
        # Django's APPEND_SLASH runs before authentication and before the view.
        if not route.slash:
            if req.method in ("GET", "HEAD"):
                location = req.path + "/" + (f"?{req.query}" if req.query else "")
                return ApiResponse(301, b"", "text/html; charset=utf-8", {"Location": location})
            return html_response(
                404,
                "Not Found",
                f"Please append a / to the URL {req.path} - a {req.method} cannot be redirected.",
            )
        if not _accepts_json(req.headers.get("accept")):
            return json_response(406, {"detail": "Could not satisfy the request Accept header."})
        denied = _check_bearer(req, self._s.api_token, "Invalid API key", revoked=self.token_revoked)
        if denied is not None:
            return denied
        if not split[1]:
            return html_response(500, "Server Error (500)", "")
        if route.kind == "terminal":
            return self._products_page(req) if req.method == "GET" else _not_allowed(req.method, "GET")
        assert route.token is not None
        if route.kind == "wallet":
            return self._wallet(route.token) if req.method == "GET" else _not_allowed(req.method, "GET")
        return self._transact(req, route.token) if req.method == "POST" else _not_allowed(req.method, "POST")

    def _products_page(self, req: ApiRequest) -> ApiResponse:
        page_text = parse_qs(req.query).get("page", ["1"])[0]
        products = list(self._s.products)
        pages = max(1, math.ceil(len(products) / PAGE_SIZE))
        page = int(page_text) if page_text.isdigit() else 0
        if not 1 <= page <= pages:
            return json_response(404, {"detail": "Invalid page."})
        url = f"{req.origin}{req.path}"
        next_url = f"{url}?page={page + 1}" if page < pages else None
        previous_url = None if page == 1 else (url if page == 2 else f"{url}?page={page - 1}")
        chunk = products[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        return json_response(
            200,
            {
                "links": {"next": next_url, "previous": previous_url},
                "count": len(products),
                "data": {"products": [{"id": pid, "friendly_name": n, "price": p} for pid, n, p in chunk]},
            },
        )

    def _wallet(self, token: str) -> ApiResponse:
        wallet = self._ledger.wallet(token)
        if wallet is None:
            return json_response(404, {"detail": "Not found."})
        return json_response(200, self.wallet_json(wallet))

    @staticmethod
    def wallet_json(wallet: LedgerWallet) -> dict[str, Any]:
        created = datetime.fromisoformat(wallet.created_at).astimezone(REAL_SERVER_OFFSET)
        return {
            "id": wallet.id,
            "token_id": wallet.token_id,
            "created_at": created.isoformat(timespec="microseconds"),
            "balance": plugin_cents(wallet.euros),
            "paired_user": wallet.paired_user,
        }

    def _transact(self, req: ApiRequest, token: str) -> ApiResponse:
        content_type = req.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            return json_response(415, {"detail": f'Unsupported media type "{content_type}" in request.'})
        body, bad_json = _parse_json(req.body)
        if bad_json is not None:
            return bad_json
        if not isinstance(body, dict):
            kind = type(body).__name__
            return json_response(
                400, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]}
            )
        errors: dict[str, list[str]] = {}
        products = self._products(body, errors)
        description = _real_string(body, "description", errors, required=True, allow_blank=True)
        tag = _real_string(body, "tag", errors, required=False, allow_blank=False)
        if errors:
            return json_response(400, errors)
        key = body.get("idempotency_key")  # accepted and ignored by the real server; kept in the ledger
        with self._ledger.lock:
            if self._ledger.wallet(token) is None or self._unsellable.intersection(products):
                # pretix cannot place an order for an item in no quota: the view fails, nothing is booked
                return html_response(500, "Server Error (500)", "")
            wallet, _ = self._ledger.apply(
                token,
                -sum(self._prices[p] for p in products),
                list(products),
                description=description,
                tag=tag,
                idempotency_key=key if isinstance(key, str) else None,
                terminal=self._s.terminal_id,
            )
        return json_response(201, self.wallet_json(wallet))

    def _products(self, body: dict[str, Any], errors: dict[str, list[str]]) -> list[int]:
        if "products" not in body:
            errors["products"] = ["This field is required."]
            return []
        raw = body["products"]
        if raw is None:
            errors["products"] = ["This field may not be null."]
            return []
        if not isinstance(raw, list):
            errors["products"] = [f'Expected a list of items but got type "{type(raw).__name__}".']
            return []
        ids: list[int] = []
        problems: list[str] = []
        for item in raw:
            if isinstance(item, bool | int | float):
                item_id = int(item)  # the real server coerces true and 1.9 to 1
                if item_id in self._prices:
                    ids.append(item_id)
                else:
                    problems.append(f"Item with id {item_id} does not exist")
            else:
                problems.append(f"Incorrect type. Expected pk value, received {type(item).__name__}.")
        if problems:
            errors["products"] = problems
        return ids


def plugin_cents(euros: float) -> int:
    """Cents as the real plugin reports a float sum of euros: truncated, so 1.2 (a float just below
    1.20) is 119."""
    return int(Decimal(euros) * 100)


def _real_string(
    body: dict[str, Any], name: str, errors: dict[str, list[str]], *, required: bool, allow_blank: bool
) -> str | None:
    if name not in body:
        if required:
            errors[name] = ["This field is required."]
        return None
    value = body[name]
    if value is None:
        errors[name] = ["This field may not be null."]
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        errors[name] = ["Not a valid string."]
        return None
    text = str(value)
    if not text and not allow_blank:
        errors[name] = ["This field may not be blank."]
        return None
    return text


# -- the HTTP server -------------------------------------------------------------------------------------


class _WalletHTTPServer(FaultableHTTPServer):
    emulator: WalletEmulator


class _WalletRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a client's pooled connection is reused
    server_version = "taptill-wallet-emulator/1"
    timeout = 120  # idle keep-alive connections do not hold a thread forever

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and the demo want a quiet emulator; the ledger and stats say what happened

    def _dispatch(self) -> None:
        emulator = cast(_WalletHTTPServer, self.server).emulator
        split = urlsplit(self.path)
        body = self._read_body()
        if body is None:
            send_body(self, 413, b'{"detail": "Request body too large."}', "application/json")
            self.close_connection = True
            return
        if split.path == CONTROL_PREFIX or split.path.startswith(CONTROL_PREFIX + "/"):
            self._send(emulator.handle_control(self.command, split.path, body))
            return
        injector = emulator.faults
        route = emulator.route_kind(split.path)
        injector.count_request(route)
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
        host = self.headers.get("Host") or f"{emulator.host}:{emulator.port}"
        request = ApiRequest(
            method=self.command,
            path=split.path,
            query=split.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            origin=f"http://{host}",
        )
        try:
            response = emulator.api.handle(request)
        except Exception as exc:  # an emulator bug must look like a server error, not kill the thread
            print(f"wallet emulator: {type(exc).__name__}: {exc}", file=sys.stderr)
            response = html_response(500, "Server Error (500)", "")
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
            return
        self._send(response)

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: ApiResponse) -> None:
        send_body(self, response.status, response.body, response.content_type, response.headers)


class WalletEmulator:
    """A wallet API server on loopback with a ledger and fault injection; use as a context manager.

    ``wallets`` maps token UID to balance cents or to (balance cents, paired user); they are only seeded
    when the ledger at ``ledger_path`` does not know them yet. ``products`` are (id, name, price cents):
    string ids for ``doc``, integer item ids for ``real``; a negative price is a top-up (doc only).
    ``unsellable`` (real only) lists item ids that are in no pretix quota: listed, but every POST with one
    answers 500 HTML and charges nothing.
    """

    def __init__(
        self,
        flavour: Flavour = "doc",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_token: str = DEFAULT_API_TOKEN,
        terminal_id: str = "coffee_machine",
        friendly_name: str = "Kaffeemaschine",
        permission: str = "debit",
        products: Sequence[ProductSpec] | None = None,
        wallets: Mapping[str, int | tuple[int, str]] | None = None,
        ledger_path: Path | str | None = None,
        prefix: str = DEFAULT_PREFIX,
        seed: int = 0,
        latency: str = "fast",
        unsellable: Iterable[int] = (),
    ) -> None:
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown wallet emulator flavour {flavour!r}; use 'doc' or 'real'")
        if permission not in ("debit", "credit", "all"):
            raise ValueError(f"unknown terminal permission {permission!r}; use 'debit', 'credit' or 'all'")
        if products is None:
            products = DEMO_PRODUCTS_DOC if flavour == "doc" else DEMO_PRODUCTS_REAL
        self.flavour: Flavour = flavour
        self.host = host
        self._requested_port = port
        self._api_token = api_token
        self.settings = EmulatorSettings(
            prefix=prefix.rstrip("/"),
            api_token=api_token,
            terminal_id=terminal_id,
            friendly_name=friendly_name,
            permission=permission,
            products=tuple(products),
            seed=seed,
        )
        self.ledger = WalletLedger(Path(ledger_path) if ledger_path is not None else None)
        self.faults = FaultInjector(seed)
        self.faults.set_profile(latency)  # "real": answers as slow as a real pretix server's
        self.api: DocWalletApi | RealWalletApi = (
            DocWalletApi(self.settings, self.ledger)
            if flavour == "doc"
            else RealWalletApi(self.settings, self.ledger)
        )
        self._prefix = ApiPrefix(prefix)
        if unsellable:
            self.set_unsellable(unsellable)
        for token_id, spec in (wallets or {}).items():
            balance, paired_user = spec if isinstance(spec, tuple) else (spec, "")
            self.ledger.seed_wallet(token_id, balance, paired_user)
        self._server: _WalletHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def demo(cls, flavour: Flavour = "doc", **overrides: Any) -> WalletEmulator:
        """An emulator with the demo wallets (DEMO_WALLETS) and products; doc flavour may debit and credit."""
        options: dict[str, Any] = {
            "wallets": DEMO_WALLETS,
            "permission": "all" if flavour == "doc" else "debit",
        }
        options.update(overrides)
        return cls(flavour, **options)

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> WalletEmulator:
        if self._server is not None:
            raise RuntimeError("this wallet emulator is already running; create a new one to restart")
        server = _WalletHTTPServer((self.host, self._requested_port), _WalletRequestHandler)
        server.emulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="wallet-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.faults.clear()  # releases hanging requests
        server.shutdown()
        server.close_all_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> WalletEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the wallet emulator is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + self.settings.prefix

    @property
    def control_url(self) -> str:
        return self.origin + CONTROL_PREFIX

    @property
    def api_token(self) -> str:
        return self._api_token

    @property
    def connections_accepted(self) -> int:
        return self._server.connections_accepted if self._server is not None else 0

    def route_kind(self, path: str) -> str:
        return self._prefix.route_kind(path)

    # -- state -----------------------------------------------------------------------------------------

    def transactions(self) -> list[LedgerTransaction]:
        return self.ledger.transactions()

    def balance(self, uid: str) -> int:
        """The wallet's exact balance in cents, as the ledger keeps it."""
        return self.ledger.balance(uid)

    def reported_balance(self, uid: str) -> int:
        """The balance in cents as the API reports it: exact for ``doc``, truncated for ``real``."""
        wallet = self.ledger.wallet(uid)
        if wallet is None:
            raise KeyError(f"no wallet for token {uid!r}; add it with add_wallet() first")
        return wallet.balance if self.flavour == "doc" else plugin_cents(wallet.euros)

    @property
    def unsellable(self) -> frozenset[int]:
        return self.api.unsellable if isinstance(self.api, RealWalletApi) else frozenset()

    def set_unsellable(self, item_ids: Iterable[object]) -> frozenset[int]:
        """Real flavour: put these listed item ids in no quota (replaces the earlier set; empty clears).

        Raises ValueError for the doc flavour (the document has no quotas) or an id that is not listed.
        """
        if not isinstance(self.api, RealWalletApi):
            raise ValueError("unsellable products exist only in the real flavour; start it with 'real'")
        return self.api.set_unsellable(item_ids)

    def revoke_token(self, revoked: bool = True) -> None:
        """Answer every API request 401 as for a revoked token (``revoked`` False: accept it again)."""
        self.api.token_revoked = revoked

    def add_wallet(self, uid: str, balance: int, paired_user: str = "") -> LedgerWallet:
        return self.ledger.add_wallet(uid, balance, paired_user)

    def stats(self) -> dict[str, Any]:
        stats = self.faults.stats()
        stats["connections"] = self.connections_accepted
        stats["transactions"] = len(self.ledger.transactions())
        return stats

    # -- control endpoints -----------------------------------------------------------------------------

    def handle_control(self, method: str, path: str, body: bytes) -> ApiResponse:
        what = path[len(CONTROL_PREFIX) :].strip("/")
        if what == "faults":
            if method == "GET":
                return json_response(200, self.faults.state())
            if method == "DELETE":
                self.faults.clear()
                return json_response(200, self.faults.state())
            if method == "POST":
                obj, bad_json = _parse_json(body)
                if bad_json is not None:
                    return bad_json
                try:
                    self.faults.configure(obj)
                except FaultConfigError as exc:
                    return json_response(400, {"detail": str(exc)})
                return json_response(200, self.faults.state())
        elif what == "ledger" and method == "GET":
            return json_response(200, self.ledger.snapshot())
        elif what == "stats":
            if method == "DELETE":
                self.faults.reset_stats()
            if method in ("GET", "DELETE"):
                return json_response(200, self.stats())
        elif what == "token" and method == "POST":
            obj, bad_json = _parse_json(body)
            if bad_json is not None:
                return bad_json
            if not isinstance(obj, dict) or not isinstance(obj.get("revoked"), bool):
                return json_response(400, {"detail": 'send {"revoked": true} or {"revoked": false}'})
            self.revoke_token(obj["revoked"])
            return json_response(200, {"revoked": obj["revoked"]})
        elif what == "wallets" and method == "POST":
            return self._control_add_wallet(body)
        elif what == "products" and method == "GET":
            return json_response(200, self._products_state())
        elif what == "products" and method == "POST":
            return self._control_products(body)
        elif what == "" and method == "GET":
            return json_response(200, {"flavour": self.flavour, "base_url": self.base_url})
        return json_response(404, {"detail": f"no control endpoint {method} {path}"})

    def _products_state(self) -> dict[str, Any]:
        products = [{"id": pid, "friendly_name": n, "price": p} for pid, n, p in self.settings.products]
        return {"products": products, "unsellable": sorted(self.unsellable)}

    def _control_products(self, body: bytes) -> ApiResponse:
        obj, bad_json = _parse_json(body)
        if bad_json is not None:
            return bad_json
        if not isinstance(obj, dict) or not isinstance(obj.get("unsellable"), list):
            return json_response(400, {"detail": 'send {"unsellable": [3]}: the item ids in no quota'})
        try:
            self.set_unsellable(obj["unsellable"])
        except ValueError as exc:
            return json_response(400, {"detail": str(exc)})
        return json_response(200, self._products_state())

    def _control_add_wallet(self, body: bytes) -> ApiResponse:
        obj, bad_json = _parse_json(body)
        if bad_json is not None:
            return bad_json
        if not isinstance(obj, dict):
            return json_response(
                400, {"detail": 'send {"token_id": "04A1...", "balance": 500, "paired_user": ""}'}
            )
        token_id, balance, paired_user = (
            obj.get("token_id"),
            obj.get("balance", 0),
            obj.get("paired_user", ""),
        )
        if (
            not isinstance(token_id, str)
            or not token_id
            or not isinstance(balance, int)
            or isinstance(balance, bool)
            or not isinstance(paired_user, str)
        ):
            fix = "token_id must be a non-empty string, balance integer cents, paired_user a string"
            return json_response(400, {"detail": fix})
        wallet = self.add_wallet(token_id, balance, paired_user)
        return json_response(201, asdict(wallet))


# -- command line ----------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    """The emulator's command line (every option with its help, tested in tests/test_cli_help.py)."""
    p = argparse.ArgumentParser(
        prog="python -m terminal.emulator.wallet_server",
        description="Run the local wallet API emulator on loopback; prints one JSON line once listening.",
    )
    p.add_argument(
        "--flavour",
        choices=FLAVOURS,
        default="doc",
        help="doc: the API document; real: as real pretix answers (default: %(default)s)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=tcp_port, default=0, help="TCP port; 0 picks a free port")
    p.add_argument("--ledger", type=Path, default=None, help="JSON file that keeps wallets across restarts")
    p.add_argument("--demo", action="store_true", help="seed the demo wallets and products")
    p.add_argument(
        "--api-token", default=DEFAULT_API_TOKEN, help="the Bearer token it accepts (default: %(default)s)"
    )
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="the API's path prefix (default: %(default)s)")
    p.add_argument(
        "--permission",
        choices=("debit", "credit", "all"),
        default=None,
        help="doc flavour: what this terminal may do (default: debit; all with --demo)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the fault dice (default: %(default)s)")
    p.add_argument(
        "--latency",
        choices=("fast", "real"),
        default="fast",
        help="real: GET 20-60 ms, POST 150-400 ms, like a real pretix server (switchable at run time)",
    )
    p.add_argument(
        "--unsellable",
        type=int,
        action="append",
        default=[],
        metavar="ITEM_ID",
        help="real flavour: a listed item in no quota (POSTs with it answer 500); repeatable",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if args.unsellable and args.flavour != "real":
        cli.error("--unsellable needs --flavour real: the document has no quotas")

    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "ledger_path": args.ledger,
        "api_token": args.api_token,
        "prefix": args.prefix,
        "seed": args.seed,
        "latency": args.latency,
        "unsellable": args.unsellable,
    }
    if args.permission is not None:
        options["permission"] = args.permission
    try:
        emulator = (
            WalletEmulator.demo(args.flavour, **options)
            if args.demo
            else WalletEmulator(args.flavour, **options)
        )
    except (ValueError, LedgerError) as exc:
        cli.error(str(exc))
    except OSError as exc:  # the ledger's folder is missing or not writable
        cli.error(f"--ledger {args.ledger}: {exc.strerror or exc}; give a file in a writable folder")
    try:
        emulator.start()
    except OSError as exc:
        where = f"{args.host}:{args.port}"
        cli.error(f"cannot listen on {where} ({exc.strerror or exc}); pick another --port or 0")
    try:
        ready = {
            "flavour": emulator.flavour,
            "base_url": emulator.base_url,
            "api_token": emulator.api_token,
            "control_url": emulator.control_url,
        }
        print(json.dumps(ready), flush=True)
        wait_for_stop_signal()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
