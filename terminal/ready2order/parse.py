"""Parse ready2order's answers into values and outcomes; pure, never raising for anything a server sends.

Amounts come as JSON numbers or strings of euros (``10.5``, ``"124.25"``) and are read as exact
``Decimal`` (the JSON parser never makes a float of them). Lists of products, payment methods, VAT rates
and users are bare arrays; a search answers ``{"invoices": [...], "count": N}``. Errors are JSON such as
``{"error": true, "msg": "...", "code": "rateLimitExceeded"}`` (INTEGRATION-NOTES.md, ready2order).
Fields: ``GET /products`` (``product_id``, ``product_name``, ``product_itemnumber``,
``product_externalReference``, ``product_price``, ``product_vat_id``, ``product_vat``), ``GET
/paymentMethods`` (``payment_id``, ``payment_name``), ``GET /vat-rates`` (``id``, ``value`` in percent),
``GET /users`` (``user_id``, names) and the grant flow (``grantAccessToken``, ``grantAccessUri``,
``status`` in the spellings the notes list, ``accountToken``, ``expiresAt``), from seed 004.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from terminal.model import printable
from terminal.ready2order.outcomes import (
    Approved,
    DayStatus,
    Denied,
    Expired,
    Failure,
    Found,
    Grant,
    Invoice,
    PaymentMethod,
    Pending,
    Product,
    RateLimited,
    Refused,
    TokenKind,
    Unauthorized,
    Unavailable,
    User,
    VatRate,
)
from terminal.service.secret import Secret

# A page of 100 full product objects is about 150 KiB; anything far larger is not the API's answer.
MAX_BODY_BYTES = 512 * 1024
MAX_EUROS = Decimal("1000000")
RATE_LIMIT_PAUSE_S = 65.0  # the block lasts "at least 1 minute": come back a little after it
MAX_PAUSE_S = 3600.0
TEXT_MAX = 200
_MINUTES = re.compile(r"at least (\d{1,3}) minute", re.IGNORECASE)
_DIGITS = re.compile(r"-?[0-9]{1,15}")
MAX_TOKEN_CHARS = 4096
APPROVED = frozenset({"approved", "granted"})  # both spellings are seen
PENDING = frozenset({"pending"})
DENIED = frozenset({"denied", "rejected"})
EXPIRED = frozenset({"expired"})
T = TypeVar("T")


class BadBody(ValueError):
    """The body is not of the shape the API answers with."""


@dataclass(frozen=True)
class Body:
    """A 2xx answer's JSON, to be read by the call's own parser."""

    value: object


def decode(body: bytes) -> object:
    """JSON with every fraction as Decimal; raises BadBody."""

    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=refuse)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadBody("the body is not valid JSON (malformed or cut off)") from None


def euros(value: object, what: str = "amount") -> Decimal:
    """Euros given as a JSON number or a numeric string, as an exact Decimal; raises BadBody."""
    if isinstance(value, bool):
        raise BadBody(f"{what} is true/false, not an amount")
    if isinstance(value, int | Decimal):
        amount = Decimal(value)
    elif isinstance(value, float):  # only from a caller that parsed JSON itself
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise BadBody(f"{what} {printable(value, 20)!r} is not a number") from None
    else:
        raise BadBody(f"{what} is a {type(value).__name__}, not an amount")
    if not amount.is_finite() or abs(amount) > MAX_EUROS:
        raise BadBody(f"{what} {amount} is out of range")
    return amount


def _id(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise BadBody(f"{what} is true/false, not an id")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value)
    raise BadBody(f"{what} {printable(str(value), 20)!r} is not a whole number")


def _opt_id(value: object, what: str) -> int | None:
    return None if value is None or value == "" else _id(value, what)


def _opt_euros(value: object, what: str) -> Decimal | None:
    return None if value is None or value == "" else euros(value, what)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return printable(value, TEXT_MAX)
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    raise BadBody(f"a {type(value).__name__} where text belongs")


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1"):
        return value in (1, "1")
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadBody(f"{printable(str(value), 20)!r} is not true/false")


def _object(value: object, what: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise BadBody(f"{what} is not a JSON object")
    return value


def parse_invoice(raw: object) -> Invoice:
    obj = _object(raw, "the invoice")
    if "invoice_id" not in obj or "invoice_total" not in obj:
        raise BadBody("the invoice has no invoice_id or invoice_total")
    reference = obj.get("invoice_externalReferenceNumber")
    return Invoice(
        id=_id(obj["invoice_id"], "invoice_id"),
        number=_text(obj.get("invoice_numberFull")) or _text(obj.get("invoice_number")),
        total=euros(obj["invoice_total"], "invoice_total"),
        reference=None if reference is None else _text(reference),
        test_mode=_flag(obj.get("invoice_testMode", False)),
        timestamp=_text(obj.get("invoice_timestamp")),
        cancelled=bool(obj.get("invoice_deleted_at")),
        cancels=_opt_id(obj.get("invoice_reference_id"), "invoice_reference_id"),
    )


def parse_search(raw: object) -> Found:
    obj = _object(raw, "the search answer")
    invoices = obj.get("invoices")
    if not isinstance(invoices, list):
        raise BadBody("the search answer has no list of invoices")
    found = tuple(parse_invoice(item) for item in invoices)
    count = obj.get("count", len(found))
    return Found(found, max(_id(count, "count"), len(found)))


def parse_product(raw: object) -> Product:
    obj = _object(raw, "a product")
    return Product(
        id=_id(obj.get("product_id"), "product_id"),
        name=_text(obj.get("product_name")),
        price=_opt_euros(obj.get("product_price"), "product_price"),
        vat_id=_opt_id(obj.get("product_vat_id"), "product_vat_id"),
        vat_percent=_opt_euros(obj.get("product_vat"), "product_vat"),
        # item numbers come as numbers too (seed: "product_itemnumber": 1)
        external_reference=_text(obj.get("product_externalReference")) or None,
        item_number=_text(obj.get("product_itemnumber")) or None,
    )


def parse_payment_method(raw: object) -> PaymentMethod:
    obj = _object(raw, "a payment method")
    paid = obj.get("payment_markAsPaid")
    return PaymentMethod(
        id=_id(obj.get("payment_id"), "payment_id"),
        name=_text(obj.get("payment_name")),
        mark_as_paid=None if paid is None else _flag(paid),
    )


def parse_vat_rate(raw: object) -> VatRate:
    obj = _object(raw, "a VAT rate")
    return VatRate(
        id=_id(obj.get("id", obj.get("vat_id")), "id"),
        percent=_opt_euros(obj.get("value", obj.get("vat_rate")), "VAT rate"),
        name=_text(obj.get("name", obj.get("vat_name"))) or _text(obj.get("description")),
    )


def parse_user(raw: object) -> User:
    obj = _object(raw, "a user")
    names = (_text(obj.get("user_firstName")).strip(), _text(obj.get("user_lastName")).strip())
    full = " ".join(n for n in names if n)
    return User(_id(obj.get("user_id"), "user_id"), full or _text(obj.get("user_username")))


def parse_list(raw: object, item: Callable[[object], T], what: str) -> tuple[T, ...]:
    """A bare array of ``what``; raises BadBody."""
    if not isinstance(raw, list):
        raise BadBody(f"the {what} are not a JSON list")
    return tuple(item(entry) for entry in raw)


def parse_day_status(raw: object) -> DayStatus:
    obj = _object(raw, "the daily report status")
    status = obj.get("status")
    if not isinstance(status, str):
        raise BadBody("the daily report status has no status")
    return DayStatus(status.strip().lower() == "open", printable(status, 40))


# --- the grant flow ------------------------------------------------------------------------------------


def parse_grant(raw: object) -> Grant:
    """The answer to ``POST /developerToken/grantAccessToken``; raises BadBody."""
    obj = _object(raw, "the grant answer")
    token = obj.get("grantAccessToken")
    url = obj.get("grantAccessUri")
    if not _is_token(token):
        raise BadBody("the grant answer has no grantAccessToken")
    assert isinstance(token, str)
    if not isinstance(url, str) or not url.lower().startswith(("https://", "http://")):
        raise BadBody("the grant answer has no grantAccessUri to approve at")
    # the URL reaches the console and the display: one printable line, nothing a terminal obeys
    return Grant(token, printable(url, 2000), _epoch(obj.get("expiresAt")))


def parse_grant_state(raw: object) -> Pending | Approved | Denied | Expired:
    """The answer to ``GET /developerToken/grantAccessToken/{token}``; raises BadBody.

    ``approved`` or ``granted`` carries the account token; approved without a usable token yet is still
    Pending (ask again rather than store nothing)."""
    obj = _object(raw, "the grant state")
    raw_status = obj.get("status")
    status = raw_status.strip().lower() if isinstance(raw_status, str) else None
    account_token = obj.get("accountToken")
    if status in APPROVED or (status is None and account_token is not None):
        if not _is_token(account_token):
            return Pending(_epoch(obj.get("expiresAt")))
        assert isinstance(account_token, str)
        return Approved(Secret(account_token))
    if status in PENDING:
        return Pending(_epoch(obj.get("expiresAt")))
    if status in DENIED:
        return Denied(f"status {status}")
    if status in EXPIRED:
        return Expired(f"status {status}")
    raise BadBody(
        f"the grant state says status {printable(str(raw_status), 40)!r}, which the grant flow does not have"
    )


def _is_token(value: object) -> bool:
    """A bearer token: non-empty printable text without spaces (it goes into a header and a file)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TOKEN_CHARS
        and value.isprintable()
        and not any(c.isspace() for c in value)
    )


def _epoch(value: object) -> float | None:
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return float(value)
    return None


# --- errors -------------------------------------------------------------------------------------------


def error_text(body: bytes, content_type: str, status: int) -> tuple[str, str]:
    """(message, code) a person can read, from the API's JSON error; the status alone when there is none."""
    fallback = f"HTTP {status}"
    if "json" not in content_type.lower():
        return (f"{fallback} (not the API's answer)" if body else fallback), ""
    try:
        data = decode(body)
    except BadBody:
        return fallback, ""
    if not isinstance(data, dict):
        return fallback, ""
    code = data.get("code")
    for key in ("msg", "message", "error", "detail"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return printable(value.strip(), TEXT_MAX), printable(code, 60) if isinstance(code, str) else ""
    return fallback, printable(code, 60) if isinstance(code, str) else ""


def rate_limit_pause_s(message: str, retry_after: str | None) -> float:
    """How long to send nothing after a 429: the minutes the message names (or a Retry-After), and at
    least RATE_LIMIT_PAUSE_S (the real API sends no Retry-After and blocks "for at least 1 minutes")."""
    wait = RATE_LIMIT_PAUSE_S
    if m := _MINUTES.search(message):
        wait = max(wait, int(m.group(1)) * 60 + 5.0)
    if retry_after is not None and retry_after.strip().isdigit():
        wait = max(wait, float(retry_after.strip()))
    return min(wait, MAX_PAUSE_S)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def interpret(
    status: int,
    content_type: str,
    body: bytes,
    *,
    write: bool,
    problem: str | None = None,
    retry_after: str | None = None,
    token: TokenKind = "account",
) -> Body | Failure:
    """One HTTP answer: the JSON of a 2xx (``Body``, for the call's parser), else a failure outcome.

    ``write``: the request changes something (an invoice create, opening the day), so an unusable 2xx or an
    error that does not prove the contrary leaves it maybe applied. ``problem``: the body broke off, is too
    large or compressed (``terminal.net.transport``). A 404 or 405 says the base_url is wrong, not that
    the record is: it is retried, never rejected. ``token``: the kind the request carried (a 401/403
    names it).
    """
    if 200 <= status < 300:
        if not _is_json(content_type):
            shown = printable(content_type.split(";", 1)[0], 60) or "none"
            return Unavailable(
                f"the answer is not JSON (content type {shown}): not the ready2order API", maybe_applied=write
            )
        if problem is not None:
            return Unavailable(f"the answer is unusable ({problem})", maybe_applied=write)
        try:
            return Body(decode(body))
        except BadBody as exc:
            return Unavailable(str(exc), maybe_applied=write)
    message, code = error_text(body, content_type, status)
    if status in (401, 403):
        return Unauthorized(status, message, token)
    if status == 429:
        return RateLimited(rate_limit_pause_s(message, retry_after), f"HTTP 429 (rate limited): {message}")
    if status in (408, 425) or status >= 500:
        said = message if message.startswith(f"HTTP {status}") else f"HTTP {status}: {message}"
        return Unavailable(said, maybe_applied=write, status=status)
    if status in (404, 405) or not 400 <= status < 500:
        # 3xx (no redirect is followed), a 404/405 of a wrong path: the request reached no invoice endpoint
        return Unavailable(f"{message}; check [ready2order] base_url", maybe_applied=False, status=status)
    if not _is_json(content_type) or problem is not None:
        # A proxy's page, not the API's words: a refusal must not lose a fiscal record.
        return Unavailable(f"{message}: not the API's answer", maybe_applied=False, status=status)
    return Refused(status, message, code)


def read(outcome: Body | Failure, parse: Callable[[object], T], *, write: bool) -> T | Failure:
    """The call's value from a 2xx ``Body`` (an unreadable one: Unavailable), or the failure as it is."""
    if not isinstance(outcome, Body):
        return outcome
    try:
        return parse(outcome.value)
    except BadBody as exc:
        return Unavailable(f"the answer is not what the API sends ({exc})", maybe_applied=write)
