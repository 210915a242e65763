"""Parse Partybroker's answers (drinks, prices, errors, Retry-After) into outcomes; pure, never raising."""

from __future__ import annotations

import email.utils
import http
import json
import math
import re
import time

from terminal.model import printable
from terminal.partybroker.outcomes import (
    Ambiguous,
    BuyOutcome,
    Drink,
    Drinks,
    Method,
    Recorded,
    Rejected,
    Unauthorized,
)

MAX_BODY_BYTES = 256 * 1024
MAX_PRICE_CENTS = 99_999_999
MAX_RETRY_AFTER_S = 3600.0
_DIGITS = re.compile(r"[0-9]{1,9}")


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
        return printable(value, 200)  # titles reach the price board, logs and provisioning's answers
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
                return f"{fallback}: {printable(value, 200)}"
    return fallback


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:  # a status with no registered phrase
        return ""


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
            shown = printable(content_type.split(";", 1)[0])[:60] or "none"
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
