"""A Partybroker API emulator on loopback: Basic auth, moving drink prices, logouts, Premium limit, faults.

What the document leaves open, and how this emulator answers it:
- Prices: every unit sold raises its drink's price by ``rise_cents`` (up to ``max_cents``); every
  completed price interval lowers every drink's price by ``fall_cents`` (down to ``min_cents``).
  Deterministic: the same sales at the same times give the same prices.
- Logout: a client silent for more than 3 price intervals is logged out of the party (recorded in
  ``logouts``). Every call carries Basic auth, so the document gives a logged-out client no special
  answer: its next call is served normally and logs it in again (counted in ``logins``).
- Premium: with ``premium=False`` only the first three drinks exist for the API: GET lists three, and a
  POST naming another drink is refused like an unknown drink.
- A POST is all or nothing: any unknown drink or bad item refuses the whole request (404 / 400).

Faults come from the shared ``terminal.emulator.faults.FaultInjector`` (route kind ``"drinks"``; the
method tells a price poll, GET, from a sale, POST). ``POST /_emulator/faults`` takes its JSON
configuration and ``GET /_emulator/stats`` answers ``stats()``, for emulators run as a subprocess.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from terminal.emulator.faults import (
    FaultableHTTPServer,
    FaultConfigError,
    FaultInjector,
    FaultPlan,
    drop_connection,
    run_after_fault,
    run_before_fault,
    send_body,
)
from terminal.emulator.serving import LoopbackEmulator

MAX_REQUEST_BYTES = 64 * 1024
ROUTE_DRINKS = "drinks"  # the route kind fault rules can name (GET lists, POST buys)
ROUTE_OTHER = "other"


@dataclass(frozen=True)
class EmulatedDrink:
    id: int
    external_id: str | None
    title: str
    price_cents: int  # the starting price
    min_cents: int | None = None  # default: half the starting price
    max_cents: int | None = None  # default: twice the starting price


DEFAULT_DRINKS: tuple[EmulatedDrink, ...] = (
    EmulatedDrink(145, "123456", "Weißbier", 290),
    EmulatedDrink(146, "234567", "Helles", 230),
    EmulatedDrink(147, "345678", "Pils", 210),
    EmulatedDrink(148, "456789", "Radler", 250),
)


@dataclass(frozen=True)
class Logout:
    username: str
    at: float  # emulator clock time when the silence reached 3 intervals


class _Market:
    """Prices, units sold and client sessions; every method is called under the emulator's lock."""

    def __init__(
        self, drinks: Iterable[EmulatedDrink], interval_s: float, rise: int, fall: int, now: float
    ) -> None:
        self.drinks = tuple(drinks)
        self.interval_s = interval_s
        self.rise, self.fall = rise, fall
        self.price = {d.id: d.price_cents for d in self.drinks}
        self.floor = {d.id: d.price_cents // 2 if d.min_cents is None else d.min_cents for d in self.drinks}
        self.cap = {d.id: d.price_cents * 2 if d.max_cents is None else d.max_cents for d in self.drinks}
        self.sold = {d.id: 0 for d in self.drinks}
        self.started = now
        self.ticks = 0
        self.last_seen: dict[str, float] = {}
        self.logouts: list[Logout] = []
        self.logins = 0

    def advance(self, now: float) -> None:
        ticks = int((now - self.started) / self.interval_s)
        for _ in range(min(ticks - self.ticks, 10_000)):
            for d in self.drinks:
                self.price[d.id] = max(self.floor[d.id], self.price[d.id] - self.fall)
        self.ticks = max(ticks, self.ticks)
        limit = 3 * self.interval_s
        for user, seen in list(self.last_seen.items()):
            if now - seen > limit:
                self.logouts.append(Logout(user, seen + limit))
                del self.last_seen[user]

    def touch(self, user: str, now: float) -> None:
        if user not in self.last_seen:
            self.logins += 1
        self.last_seen[user] = now

    def sell(self, drink_id: int, quantity: int) -> None:
        self.sold[drink_id] += quantity
        self.price[drink_id] = min(self.cap[drink_id], self.price[drink_id] + self.rise * quantity)


class PartybrokerEmulator(LoopbackEmulator):
    """The Partybroker API of one party on ``127.0.0.1``; use as a context manager or start()/stop()."""

    kind = "partybroker"

    def __init__(
        self,
        *,
        port: int = 0,
        party_id: str = "1234",
        username: str = "taptill",
        password: str = "demo",
        drinks: Iterable[EmulatedDrink] = DEFAULT_DRINKS,
        price_interval_s: float = 60.0,
        rise_cents: int = 10,
        fall_cents: int = 10,
        premium: bool = True,
        prices_as_strings: bool = False,
        currency: str = "EUR",
        faults: FaultInjector | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if price_interval_s <= 0:
            raise ValueError("price_interval_s must be positive")
        self.party_id = party_id
        self.username = username
        self._password = password
        self.premium = premium
        self.prices_as_strings = prices_as_strings
        self.currency = currency
        self.faults = faults if faults is not None else FaultInjector()
        self._clock = clock
        self._lock = threading.Lock()
        self._market = _Market(drinks, price_interval_s, rise_cents, fall_cents, clock())
        self._port = port

    # --- lifecycle -----------------------------------------------------------------------------------

    def _bind(self) -> FaultableHTTPServer:
        return FaultableHTTPServer(("127.0.0.1", self._port), _handler_for(self))

    @property
    def base_url(self) -> str:
        """What ``[partybroker] base_url`` is set to: the API root, before ``/{PartyId}/drinks``."""
        return f"http://127.0.0.1:{self.port}/api"

    # --- inspection and control ------------------------------------------------------------------------

    def units_sold(self) -> dict[int, int]:
        with self._lock:
            return dict(self._market.sold)

    def prices(self) -> dict[int, int]:
        with self._lock:
            self._market.advance(self._clock())
            return dict(self._market.price)

    def set_price(self, drink_id: int, cents: int) -> None:
        """Move the market by hand (tests and demos); the price then rises and falls from there."""
        with self._lock:
            if drink_id not in self._market.price:
                raise KeyError(f"no drink {drink_id} in this party")
            self._market.advance(self._clock())
            self._market.price[drink_id] = cents

    @property
    def logouts(self) -> int:
        return len(self.logout_log())

    def logout_log(self) -> list[Logout]:
        with self._lock:
            self._market.advance(self._clock())
            return list(self._market.logouts)

    def stats(self) -> dict[str, object]:
        with self._lock:
            self._market.advance(self._clock())
            market = {
                "logins": self._market.logins,
                "logouts": len(self._market.logouts),
                "units_sold": {str(k): v for k, v in self._market.sold.items()},
                "prices": {str(k): v for k, v in self._market.price.items()},
            }
        return {**self.faults.stats(), **market}

    # --- the API, called by the request handler ----------------------------------------------------------

    def _visible(self) -> tuple[EmulatedDrink, ...]:
        drinks = self._market.drinks
        return drinks if self.premium else drinks[:3]

    def _wire(self, d: EmulatedDrink) -> dict[str, object]:
        price = self._market.price[d.id]
        return {
            "id": d.id,
            "externalId": d.external_id,
            "title": d.title,
            "price": str(price) if self.prices_as_strings else price,
            "currency": self.currency,
        }

    def _authorized(self, header: str | None) -> str | None:
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        ok = hmac.compare_digest(user.encode(), self.username.encode()) & hmac.compare_digest(
            password.encode(), self._password.encode()
        )
        return user if ok else None

    def handle(self, method: str, path: str, auth: str | None, body: bytes) -> tuple[int, object]:
        """Answer one API call with (status, JSON value); the handler adds faults around it."""
        with self._lock:
            now = self._clock()
            self._market.advance(now)
            user = self._authorized(auth)
            if user is None:
                return 401, {"error": "Unauthorized"}
            self._market.touch(user, now)
            parts = path.split("?", 1)[0].strip("/").split("/")
            if len(parts) != 3 or parts[0] != "api" or parts[2] != "drinks":
                return 404, {"error": "Not found"}
            if parts[1] != self.party_id:
                return 404, {"error": f"Party {parts[1][:40]} not found"}
            if method == "GET":
                return 200, [self._wire(d) for d in self._visible()]
            return self._buy(body)

    def _buy(self, body: bytes) -> tuple[int, object]:
        try:
            items = json.loads(body)
        except (ValueError, RecursionError):
            return 400, {"error": "Body is not valid JSON"}
        if not isinstance(items, list) or not items:
            return 400, {"error": "Body must be a non-empty list of drinks"}
        by_id = {d.id: d for d in self._visible()}
        by_external = {d.external_id: d for d in self._visible() if d.external_id is not None}
        order: list[tuple[EmulatedDrink, int]] = []
        for item in items:
            if not isinstance(item, dict):
                return 400, {"error": "Every item must be an object"}
            quantity = item.get("quantity")
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                return 400, {"error": "quantity must be a positive integer"}
            if "id" in item:
                drink = by_id.get(item["id"]) if isinstance(item["id"], int) else None
            elif "externalId" in item:
                drink = by_external.get(str(item["externalId"]))
            else:
                return 400, {"error": "Either id or externalId must be given"}
            if drink is None:
                shown = json.dumps(item.get("id", item.get("externalId")))[:40]
                return 404, {"error": f"Drink {shown} not found"}
            order.append((drink, quantity))
        sold: dict[int, EmulatedDrink] = {}
        for drink, quantity in order:
            self._market.sell(drink.id, quantity)
            sold[drink.id] = drink
        return 200, [self._wire(d) for d in sold.values()]


def _route(path: str) -> str:
    parts = path.split("?", 1)[0].strip("/").split("/")
    return ROUTE_DRINKS if len(parts) == 3 and parts[0] == "api" and parts[2] == "drinks" else ROUTE_OTHER


def _handler_for(emulator: PartybrokerEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "PartybrokerEmulator/1"
        timeout = 30  # idle keep-alive connections are closed after this

        def log_message(self, format: str, *args: object) -> None:
            pass  # the tests and the demo read stats(), not an access log

        def do_GET(self) -> None:
            if self.path == "/_emulator/stats":
                send_body(self, 200, json.dumps(emulator.stats()).encode(), "application/json")
                return
            self._serve("GET", b"")

        def do_POST(self) -> None:
            length = self.headers.get("Content-Length", "0")
            size = int(length) if length.isdigit() else -1
            if not 0 <= size <= MAX_REQUEST_BYTES:
                self.close_connection = True
                send_body(self, 413, b'{"error":"Request too large"}', "application/json")
                return
            body = self.rfile.read(size)
            if self.path == "/_emulator/faults":
                self._configure_faults(body)
                return
            self._serve("POST", body)

        def _configure_faults(self, body: bytes) -> None:
            try:
                emulator.faults.configure(json.loads(body))
            except (ValueError, FaultConfigError) as exc:
                send_body(self, 400, json.dumps({"error": str(exc)}).encode(), "application/json")
                return
            send_body(self, 200, json.dumps(emulator.faults.state()).encode(), "application/json")

        def _serve(self, method: str, body: bytes) -> None:
            route = _route(self.path)
            injector = emulator.faults
            injector.count_request(route)
            if injector.down:
                injector.record_down()
                drop_connection(self)
                return
            plan: FaultPlan = injector.plan(method, route)
            if plan.delay_ms:
                time.sleep(plan.delay_ms / 1000)
            if plan.before is not None:
                run_before_fault(self, plan.before, injector)
                return
            status, value = emulator.handle(method, self.path, self.headers.get("Authorization"), body)
            payload = json.dumps(value, ensure_ascii=False).encode()
            content_type = "application/json; charset=utf-8"
            headers = {"WWW-Authenticate": 'Basic realm="Partybroker API"'} if status == 401 else None
            try:
                if plan.after is not None:
                    run_after_fault(self, plan.after, injector, status, payload, content_type, headers)
                else:
                    send_body(self, status, payload, content_type, headers)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (its timeout); the sale stays booked

    return Handler
