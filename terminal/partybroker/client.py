"""Partybroker API client: list drinks and report sales, answering with typed outcomes, never raising."""

from __future__ import annotations

import base64
import email.utils
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal
from urllib.parse import quote

import httpx

from terminal.net.deadline import Deadline, SendWatch
from terminal.service.secret import Secret

MAX_BODY_BYTES = 256 * 1024
MAX_PRICE_CENTS = 99_999_999
MAX_RETRY_AFTER_S = 3600.0
_DIGITS = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class DrinkRef:
    """Which Partybroker drink a sale is for: its Partybroker ``id`` or the POS's ``externalId``."""

    id: int | None = None
    external_id: str | None = None

    def __post_init__(self) -> None:
        if (self.id is None) == (self.external_id is None):
            raise ValueError("a DrinkRef needs exactly one of id or external_id")

    def matches(self, drink: Drink) -> bool:
        if self.id is not None:
            return drink.id == self.id
        return drink.external_id is not None and drink.external_id == self.external_id

    def __str__(self) -> str:
        return f"id {self.id}" if self.id is not None else f"externalId {self.external_id!r}"


@dataclass(frozen=True)
class Sale:
    """``quantity`` units of one drink, as one item of a Buy Drinks request."""

    drink: DrinkRef
    quantity: int

    def __post_init__(self) -> None:
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity < 1:
            raise ValueError(f"a sale's quantity must be a positive whole number, got {self.quantity!r}")

    def wire(self) -> dict[str, object]:
        if self.drink.id is not None:
            return {"id": self.drink.id, "quantity": self.quantity}
        return {"externalId": self.drink.external_id, "quantity": self.quantity}


@dataclass(frozen=True)
class Drink:
    """One drink as the party lists it; ``price_cents`` is the current market price."""

    id: int
    external_id: str | None
    title: str
    price_cents: int
    currency: str | None


# --- outcomes: expected conditions are values, not exceptions ---------------------------------------


@dataclass(frozen=True)
class Drinks:
    """2xx with a usable list: all drinks (GET) or the drinks just sold with their new prices (POST)."""

    drinks: tuple[Drink, ...]


@dataclass(frozen=True)
class Recorded:
    """POST answered 2xx, so the party took the sale, but the body carried no usable prices."""

    reason: str


@dataclass(frozen=True)
class Unauthorized:
    """401: the API credentials are wrong; a configuration problem, not the sale's."""

    reason: str


@dataclass(frozen=True)
class Rejected:
    """A definitive refusal (400, 403, 404, ...): sending the same request again will not help."""

    status: int
    reason: str


@dataclass(frozen=True)
class Ambiguous:
    """No definitive answer: timeout, connection trouble, 5xx, 429, or a body that isn't the API's.

    ``maybe_applied`` is False only when a POST provably had no effect (it never reached the server,
    or the server answered 429/3xx), and always False for a GET, which changes nothing.
    """

    reason: str
    retry_after: float | None = None
    maybe_applied: bool = True


DrinksOutcome = Drinks | Unauthorized | Rejected | Ambiguous
BuyOutcome = Drinks | Recorded | Unauthorized | Rejected | Ambiguous
Method = Literal["GET", "POST"]


# --- parsing of server data (pure; must never raise) --------------------------------------------------


class BadBody(ValueError):
    """The body is not a drinks list of the shape the Partybroker document describes."""


def parse_cents(value: object) -> int:
    """A price in cents given as a JSON number or a numeric string (the document shows both)."""
    if isinstance(value, bool):
        raise BadBody("price is true/false, not cents")
    if isinstance(value, int):
        cents = value
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise BadBody(f"price {value!r} is not a whole number of cents")
        cents = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not _DIGITS.fullmatch(text):
            raise BadBody(f"price {value[:20]!r} is not a whole number of cents")
        cents = int(text)
    else:
        raise BadBody(f"price is a {type(value).__name__}, not cents")
    if not 0 <= cents <= MAX_PRICE_CENTS:
        raise BadBody(f"price {cents} is out of range")
    return cents


def _drink_id(value: object) -> int:
    if isinstance(value, bool):
        raise BadBody("drink id is true/false")
    if isinstance(value, int) and 0 <= value <= 2**53:
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    raise BadBody(f"drink id {str(value)[:20]!r} is not a whole number")


def _opt_text(value: object, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value[:200]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # the Drink model calls externalId an Integer; the examples send strings
    raise BadBody(f"{what} is a {type(value).__name__}, not text")


def parse_drink(raw: object) -> Drink:
    if not isinstance(raw, dict):
        raise BadBody("a drink is not a JSON object")
    if "price" not in raw:
        raise BadBody("a drink has no price")
    return Drink(
        id=_drink_id(raw.get("id")),
        external_id=_opt_text(raw.get("externalId"), "externalId"),
        title=_opt_text(raw.get("title"), "title") or "",
        price_cents=parse_cents(raw.get("price")),
        currency=_opt_text(raw.get("currency"), "currency"),
    )


def parse_drinks(body: bytes) -> tuple[Drink, ...]:
    """The JSON list of drinks that both GET and POST answer with; raises only BadBody."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadBody("the body is not valid JSON (malformed or cut off)") from None
    if not isinstance(data, list):
        raise BadBody(f"the body is a JSON {type(data).__name__}, not a list of drinks")
    return tuple(parse_drink(item) for item in data)


def error_reason(body: bytes, content_type: str, status: int) -> str:
    """A short reason a person can read, from a JSON error body if there is one."""
    fallback = f"HTTP {status} {_phrase(status)}".rstrip()
    if "html" in content_type.lower():
        return f"{fallback} (an HTML page, not the API)"
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return fallback
    if isinstance(data, dict):
        for key in ("message", "error", "detail", "title"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return f"{fallback}: {_printable(value)}"
    return fallback


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)[:200]


def _phrase(status: int) -> str:
    return httpx.codes.get_reason_phrase(status)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), clamped to [0, 1 h]."""
    if value is None:
        return None
    text = value.strip()
    if _DIGITS.fullmatch(text):
        return min(float(text), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), MAX_RETRY_AFTER_S)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def interpret(
    method: Method,
    status: int,
    content_type: str,
    body: bytes,
    *,
    too_large: bool = False,
    broken: str | None = None,
    retry_after: str | None = None,
) -> BuyOutcome:
    """Turn one HTTP answer into an outcome; pure, and never raises for anything a server can send."""
    post = method == "POST"
    if 200 <= status < 300:
        problem: str | None = None
        if not _is_json(content_type):
            # A JSON-less 2xx may come from a proxy or captive portal rather than the party.
            shown = _printable(content_type.split(";", 1)[0])[:60] or "none"
            return Ambiguous(f"the answer is not JSON (content type {shown})", maybe_applied=post)
        if broken is not None:
            problem = f"the answer broke off ({broken})"
        elif too_large:
            problem = f"the answer is larger than {MAX_BODY_BYTES // 1024} KiB"
        else:
            try:
                return Drinks(parse_drinks(body))
            except BadBody as exc:
                problem = str(exc)
        # A JSON 2xx comes from the party, which booked the sale whatever the body says; a GET just failed.
        return Recorded(problem) if post else Ambiguous(problem, maybe_applied=False)
    reason = error_reason(body, content_type, status)
    if status == 401:
        return Unauthorized(f"{reason}; check [partybroker] username and password_file")
    if status == 429:
        return Ambiguous(reason, parse_retry_after(retry_after), maybe_applied=False)
    if status in (408, 425) or status >= 500:
        return Ambiguous(reason, parse_retry_after(retry_after), maybe_applied=post)
    if 400 <= status < 500:
        return Rejected(status, reason)
    # 1xx/3xx: we follow no redirects, so the request went nowhere useful; usually a wrong base_url.
    return Ambiguous(f"{reason}; check [partybroker] base_url", maybe_applied=False)


# --- the client -----------------------------------------------------------------------------------------


class PartybrokerClient:
    """One party's drinks endpoint over one pooled keep-alive connection.

    Every call is over within ``timeout_s`` seconds (connect, send, headers and the whole body
    together; a connect alone gives up after ``connect_timeout_s``), whatever pace the server sends at.
    """

    def __init__(
        self,
        base_url: str,
        party_id: str,
        username: str,
        password: Secret,
        *,
        timeout_s: float = 5.0,
        connect_timeout_s: float = 3.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/{quote(party_id, safe='')}/drinks"
        self._auth = Secret(
            "Basic " + base64.b64encode(f"{username}:{password.reveal()}".encode()).decode("ascii")
        )
        self._timeout = httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s))
        self._total_s = timeout_s
        self._connect_s = connect_timeout_s
        self._max_body = max_body_bytes
        self._http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=30.0),
            timeout=self._timeout,
            follow_redirects=False,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "taptill-partybroker"},
        )

    def __repr__(self) -> str:
        return f"PartybrokerClient({self.url!r})"

    async def __aenter__(self) -> PartybrokerClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def drinks(self) -> DrinksOutcome:
        """GET the party's drinks with their current prices."""
        outcome = await self._call("GET", None)
        assert not isinstance(outcome, Recorded)  # interpret() gives Recorded only for POST
        return outcome

    async def buy(self, sales: Sequence[Sale]) -> BuyOutcome:
        """POST sales (by id and/or externalId, in one request); answers with the drinks' new prices."""
        if not sales:
            raise ValueError("buy() needs at least one sale")
        return await self._call("POST", [s.wire() for s in sales])

    async def _call(self, method: Method, payload: list[dict[str, object]] | None) -> BuyOutcome:
        post = method == "POST"
        headers = {"Authorization": self._auth.reveal()}
        content: bytes | None = None
        if payload is not None:
            content = json.dumps(payload, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        status: int | None = None
        content_type = ""
        retry_after: str | None = None
        body = bytearray()
        too_large = False
        broken: str | None = None
        deadline = Deadline.after(self._total_s)
        watch = SendWatch()
        try:
            async with deadline.scope():
                request = self._http.build_request(
                    method,
                    self.url,
                    headers=headers,
                    content=content,
                    timeout=deadline.httpx_timeout(self._connect_s),
                    extensions=watch.extensions,
                )
                response = await self._http.send(request, stream=True)
                try:
                    status = response.status_code
                    content_type = response.headers.get("content-type", "")
                    retry_after = response.headers.get("retry-after")
                    try:
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > self._max_body:
                                too_large = True
                                break
                    except httpx.HTTPError as exc:
                        broken = _describe(exc)
                finally:
                    await response.aclose()
        except TimeoutError:
            if status is None:
                return Ambiguous(deadline.describe(), maybe_applied=post and watch.may_have_arrived)
            broken = f"body not complete within {self._total_s:g} s"
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The request never left this machine: nothing can have been booked.
            return Ambiguous(f"cannot connect to Partybroker ({_describe(exc)})", maybe_applied=False)
        except httpx.HTTPError as exc:
            if status is None:
                return Ambiguous(
                    f"no answer from Partybroker ({_describe(exc)})",
                    maybe_applied=post and watch.may_have_arrived,
                )
            broken = _describe(exc)
        assert status is not None
        return interpret(
            method,
            status,
            content_type,
            bytes(body),
            too_large=too_large,
            broken=broken,
            retry_after=retry_after,
        )


def _describe(exc: BaseException) -> str:
    # httpx messages name the host and the OS error, never headers, so they carry no credentials.
    text = _printable(str(exc)) if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
