"""Fuzzing of the Partybroker response parsers: anything a server sends becomes a typed outcome."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.model import printable
from terminal.partybroker.outcomes import Ambiguous, Drink, Drinks, Recorded, Rejected, Unauthorized
from terminal.partybroker.parse import BadBody, interpret, parse_cents, parse_drinks, parse_retry_after

pytestmark = pytest.mark.partybroker

OUTCOMES = (Drinks, Recorded, Unauthorized, Rejected, Ambiguous)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.from_regex(r"\s*[0-9]{1,12}\s*", fullmatch=True),
    st.lists(st.integers(), max_size=2),
)
drinkish = st.dictionaries(
    st.sampled_from(["id", "externalId", "title", "price", "currency", "extra"]), field_values, max_size=6
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/problem+json",
        "text/html",
        "text/plain",
        "",
        "APPLICATION/JSON",
        "application/jsonx",
    ]
) | st.text(max_size=30)


def body_of(value: object) -> bytes:
    return json.dumps(value).encode()


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_parse_drinks_raises_only_badbody_on_any_bytes(body: bytes) -> None:
    try:
        drinks = parse_drinks(body)
    except BadBody:
        return
    assert all(isinstance(d, Drink) for d in drinks)


@settings(max_examples=400)
@given(json_values | st.lists(drinkish, max_size=5))
def test_parse_drinks_raises_only_badbody_on_any_json(value: object) -> None:
    try:
        drinks = parse_drinks(body_of(value))
    except BadBody:
        return
    for d in drinks:
        assert isinstance(d.id, int) and 0 <= d.price_cents <= 99_999_999
        assert d.external_id is None or isinstance(d.external_id, str)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.none() | st.text(max_size=8),
            st.text(max_size=12),
            st.integers(0, 99_999_999),
            st.booleans(),
        ),
        max_size=6,
    )
)
def test_well_formed_lists_parse_exactly(items: list[tuple[int, str | None, str, int, bool]]) -> None:
    wire = [
        {
            "id": i,
            "externalId": ext,
            "title": title,
            "price": str(price) if as_text else price,
            "currency": "EUR",
        }
        for i, ext, title, price, as_text in items
    ]
    drinks = parse_drinks(body_of(wire))
    # text arrives printable (one line, no control characters), otherwise exactly as sent
    assert [(d.id, d.external_id, d.title, d.price_cents) for d in drinks] == [
        (i, None if ext is None else printable(ext), printable(title), price)
        for i, ext, title, price, _ in items
    ]


def test_a_title_that_would_forge_lines_arrives_as_one_plain_line() -> None:
    """A title written into a file, a log line or the price board must not add lines or escapes there."""
    title = "Bier\n[offline]\nmax_sale_cents = 99999999\x1b[2J\u202e"
    (drink,) = parse_drinks(body_of([{"id": 1, "externalId": "7\r\n", "title": title, "price": 350}]))
    assert drink.title == "Bier [offline] max_sale_cents = 99999999"
    assert drink.external_id == "7  "


@settings(max_examples=500)
@given(
    st.sampled_from(["GET", "POST"]),
    st.integers(100, 599),
    content_types,
    st.binary(max_size=200) | json_values.map(body_of) | st.lists(drinkish, max_size=3).map(body_of),
    st.booleans(),
    st.none() | st.text(max_size=20),
    st.none() | st.text(max_size=40),
)
def test_interpret_always_gives_a_typed_outcome(
    method: str,
    status: int,
    content_type: str,
    body: bytes,
    too_large: bool,
    broken: str | None,
    retry_after: str | None,
) -> None:
    out = interpret(
        method,  # type: ignore[arg-type]
        status,
        content_type,
        body,
        too_large=too_large,
        broken=broken,
        retry_after=retry_after,
    )
    assert isinstance(out, OUTCOMES)
    if method == "GET":
        assert not isinstance(out, Recorded)
        if isinstance(out, Ambiguous):
            assert not out.maybe_applied
    if not 200 <= status < 300:
        assert not isinstance(out, Drinks | Recorded)
    if isinstance(out, Ambiguous) and out.retry_after is not None:
        assert 0 <= out.retry_after <= 3600


@given(st.text(max_size=40))
def test_retry_after_never_raises(value: str) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or 0 <= seconds <= 3600


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("99999999") == 3600


@pytest.mark.parametrize(
    ("value", "cents"), [(290, 290), ("290", 290), (" 310 ", 310), (290.0, 290), ("0", 0)]
)
def test_prices_as_numbers_or_numeric_strings(value: object, cents: int) -> None:
    assert parse_cents(value) == cents


@pytest.mark.parametrize(
    "value", [True, None, "2,90", "2.90", "", "-5", -5, 2.5, float("inf"), "1e3", [], "٣"]
)
def test_prices_that_are_not_cents_are_refused(value: object) -> None:
    with pytest.raises(BadBody):
        parse_cents(value)


def test_status_classes() -> None:
    html = "text/html"
    assert isinstance(interpret("POST", 401, html, b""), Unauthorized)
    assert interpret("POST", 404, "application/json", b'{"error": "Drink 9 not found"}') == Rejected(
        404, "HTTP 404 Not Found: Drink 9 not found"
    )
    assert interpret("POST", 503, html, b"<h1>x</h1>") == Ambiguous(
        "HTTP 503 Service Unavailable (an HTML page, not the API)", None, True
    )
    assert interpret("POST", 301, html, b"").maybe_applied is False  # type: ignore[union-attr]
    assert isinstance(interpret("POST", 200, "application/json", b"[{"), Recorded)
    assert isinstance(interpret("GET", 200, "application/json", b"[{"), Ambiguous)
