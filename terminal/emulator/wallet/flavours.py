"""The wallet API as documented (``doc``) and as deployed (``real``): what each flavour answers and books.

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

Both book into a ``WalletLedger``; it records description, tag and idempotency key of every applied
transaction even in ``real``, where the server validates them but stores nothing (the plugin's
TransactionSerializer builds the order, its payment and the gift card transaction from fixed fields):
that record is the tests' view, and nothing in the ``real`` API ever reads it back.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qs

from terminal.emulator.wallet.ledger import LedgerWallet, WalletLedger
from terminal.emulator.wallet.routes import (
    ApiPrefix,
    ApiRequest,
    ApiResponse,
    accepts_json,
    check_bearer,
    html_response,
    json_response,
    match_route,
    not_allowed,
    parse_json,
)

Flavour = Literal["doc", "real"]
FLAVOURS: tuple[Flavour, ...] = ("doc", "real")
PAGE_SIZE = 50
REAL_SERVER_OFFSET = timezone(timedelta(hours=1))

ProductSpec = tuple[str | int, str, int]  # (id, name, price in cents; negative = top-up)

DEMO_PRODUCTS_DOC: tuple[ProductSpec, ...] = (
    ("espresso", "Espresso", 250),
    ("cappuccino", "Cappuccino", 300),
    ("latte", "Latte Macchiato", 350),
    ("water", "Wasser", 150),
    ("topup_10", "Aufladung 10 €", -1000),
    ("topup_20", "Aufladung 20 €", -2000),
    # denominations: a table terminal pays a bill's amount with these (`taptill demo --mode table`)
    ("eur10", "Tischrechnung 10 €", 1000),
    ("eur1", "Tischrechnung 1 €", 100),
    ("ct10", "Tischrechnung 10 ct", 10),
    ("ct1", "Tischrechnung 1 ct", 1),
)
DEMO_PRODUCTS_REAL: tuple[ProductSpec, ...] = (
    (1, "Espresso", 250),
    (2, "Cappuccino", 300),
    (3, "Latte Macchiato", 350),
    (4, "Wasser", 150),
)

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
        self.refusal: str | None = None  # every transaction refused with this detail (refuse_transactions)
        self._prefix = ApiPrefix(settings.prefix)
        self._prices: dict[str, int] = {str(pid): price for pid, _, price in settings.products}

    def handle(self, req: ApiRequest) -> ApiResponse:
        split = self._prefix.split(req.path)
        route = match_route(split[0]) if split and split[1] else None
        if route is None:
            return json_response(404, {"detail": "Not found."})
        denied = check_bearer(req, self._s.api_token, "Invalid token.", revoked=self.token_revoked)
        if denied is not None:
            return denied
        if route.kind == "terminal":
            return self._terminal() if req.method == "GET" else not_allowed(req.method, "GET")
        assert route.token is not None
        if route.kind == "wallet":
            return self._wallet(route.token) if req.method == "GET" else not_allowed(req.method, "GET")
        return self._transact(req, route.token) if req.method == "POST" else not_allowed(req.method, "POST")

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
        if self.refusal is not None:
            return json_response(400, {"detail": self.refusal})
        body, bad_json = parse_json(req.body)
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
        if not accepts_json(req.headers.get("accept")):
            return json_response(406, {"detail": "Could not satisfy the request Accept header."})
        denied = check_bearer(req, self._s.api_token, "Invalid API key", revoked=self.token_revoked)
        if denied is not None:
            return denied
        if not split[1]:
            return html_response(500, "Server Error (500)", "")
        if route.kind == "terminal":
            return self._products_page(req) if req.method == "GET" else not_allowed(req.method, "GET")
        assert route.token is not None
        if route.kind == "wallet":
            return self._wallet(route.token) if req.method == "GET" else not_allowed(req.method, "GET")
        return self._transact(req, route.token) if req.method == "POST" else not_allowed(req.method, "POST")

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
        body, bad_json = parse_json(req.body)
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
