"""ready2order's answers parsed: euros exact as Decimal (numbers or strings), invoices, searches, lists,
errors and the 429's pause; integer cents to exact decimal strings. Nothing a server sends raises."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.ready2order.invoice import euros_of, euros_text
from terminal.ready2order.outcomes import Invoice, PaymentMethod, Product, VatRate
from terminal.ready2order.parse import (
    RATE_LIMIT_PAUSE_S,
    BadBody,
    decode,
    error_text,
    euros,
    parse_day_status,
    parse_invoice,
    parse_list,
    parse_payment_method,
    parse_product,
    parse_search,
    parse_vat_rate,
    rate_limit_pause_s,
)

pytestmark = pytest.mark.ready2order


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"10.5", Decimal("10.5")),
        (b'"124.25"', Decimal("124.25")),
        (b"12", Decimal("12")),
        (b"0.1", Decimal("0.10")),
        (b'" 2.90 "', Decimal("2.9")),
        (b"-3.20", Decimal("-3.2")),
    ],
)
def test_euros_as_numbers_or_strings_are_exact(raw: bytes, expected: Decimal) -> None:
    value = euros(decode(raw))
    assert value == expected and isinstance(value, Decimal)


def test_a_json_fraction_never_becomes_a_float() -> None:
    # 0.1 + 0.2 as floats is 0.30000000000000004; as the API's decimals it is 0.3
    assert euros(decode(b"0.1")) + euros(decode(b"0.2")) == Decimal("0.3")


@pytest.mark.parametrize("raw", [b"true", b'"abc"', b"null", b"[1]", b'"NaN"', b'"Infinity"', b"1e400"])
def test_what_is_no_amount_is_refused(raw: bytes) -> None:
    with pytest.raises(BadBody):
        euros(decode(raw))


@given(st.integers(min_value=-10_000_000, max_value=10_000_000))
def test_cents_become_exact_decimal_strings_and_back(cents: int) -> None:
    text = euros_text(cents)
    assert Decimal(text) * 100 == cents
    assert text.count(".") == 1 and len(text.split(".")[1]) == 2
    assert euros_of(cents) == Decimal(text)


@pytest.mark.parametrize(
    ("cents", "text"), [(250, "2.50"), (5, "0.05"), (0, "0.00"), (-100, "-1.00"), (12345, "123.45")]
)
def test_cents_as_text(cents: int, text: str) -> None:
    assert euros_text(cents) == text


INVOICE = {
    "invoice_id": 1234,
    "invoice_numberFull": "RG2019/1",
    "invoice_total": 12,
    "invoice_externalReferenceNumber": "REF-1234",
    "invoice_testMode": True,
    "invoice_timestamp": "2019-01-01 00:00:00",
    "invoice_deleted_at": None,
}


def test_an_invoice_as_the_seed_shows_it() -> None:
    assert parse_invoice(INVOICE) == Invoice(
        1234, "RG2019/1", Decimal(12), "REF-1234", True, "2019-01-01 00:00:00"
    )


def test_an_invoice_with_string_fields_and_a_cancellation() -> None:
    raw = {**INVOICE, "invoice_id": "77", "invoice_total": "2.90", "invoice_testMode": "false"}
    raw["invoice_deleted_at"] = "2019-01-02 10:00:00"
    inv = parse_invoice(raw)
    assert (inv.id, inv.total, inv.test_mode, inv.cancelled) == (77, Decimal("2.90"), False, True)


def test_a_storno_names_the_invoice_it_cancels() -> None:
    """invoice_reference_id (seed 004): a storno's original; empty or absent on an ordinary invoice."""
    storno = {**INVOICE, "invoice_id": 1235, "invoice_total": -12, "invoice_reference_id": "1234"}
    assert parse_invoice(storno).cancels == 1234
    assert parse_invoice({**INVOICE, "invoice_reference_id": ""}).cancels is None
    assert parse_invoice(INVOICE).cancels is None


def test_server_text_in_an_invoice_is_made_printable() -> None:
    inv = parse_invoice(
        {**INVOICE, "invoice_numberFull": "RG\x1b[2J1\nforged", "invoice_externalReferenceNumber": "a\u202eb"}
    )
    assert inv.number == "RG1 forged" and inv.reference == "ab"


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"invoice_id": 1},
        {**INVOICE, "invoice_total": None},
        {**INVOICE, "invoice_id": True},
        {**INVOICE, "invoice_testMode": "maybe"},
        {**INVOICE, "invoice_numberFull": {"x": 1}},
        {**INVOICE, "invoice_reference_id": "one"},
    ],
)
def test_what_is_no_invoice_is_refused(raw: object) -> None:
    with pytest.raises(BadBody):
        parse_invoice(raw)


def test_a_search_answer() -> None:
    found = parse_search({"invoices": [INVOICE, {**INVOICE, "invoice_id": 2}], "count": 7, "offset": 0})
    assert [i.id for i in found.invoices] == [1234, 2] and found.count == 7
    assert parse_search({"invoices": []}).count == 0
    assert parse_search({"invoices": [INVOICE], "count": 0}).count == 1  # never fewer than listed
    with pytest.raises(BadBody):
        parse_search({"count": 1})


def test_lists_are_bare_arrays() -> None:
    products = parse_list(
        [
            {"product_id": 1, "product_name": "Espresso", "product_price": 10.5, "product_vat_id": 2},
            {
                "product_id": "2",
                "product_name": "Bier",
                "product_price": "124.25",
                "product_vat": "20.0",
                "product_externalReference": "ref-1",
                "product_itemnumber": 4711,
            },
        ],
        parse_product,
        "products",
    )
    assert products == (
        Product(1, "Espresso", Decimal("10.5"), 2),
        Product(2, "Bier", Decimal("124.25"), None, Decimal(20), "ref-1", "4711"),
    )
    assert parse_list(
        [{"payment_id": 3, "payment_name": "Wallet", "payment_markAsPaid": 1}], parse_payment_method, "x"
    ) == (PaymentMethod(3, "Wallet", True),)
    assert parse_list([{"id": 4, "value": 0, "name": "0%"}], parse_vat_rate, "x") == (
        VatRate(4, Decimal(0), "0%"),
    )
    with pytest.raises(BadBody):
        parse_list({"data": []}, parse_product, "products")


@pytest.mark.parametrize(
    ("raw", "is_open"),
    [({"status": "open"}, True), ({"status": "OPEN "}, True), ({"status": "closed"}, False)],
)
def test_the_daily_report_status(raw: object, is_open: bool) -> None:
    assert parse_day_status(raw).open is is_open


def test_error_texts_come_from_the_api_json_and_stay_one_line() -> None:
    body = json.dumps({"error": True, "msg": "Bad\nitem\x1b[31m", "code": "invalid"}).encode()
    assert error_text(body, "application/json", 400) == ("Bad item", "invalid")
    assert error_text(b"<html>", "text/html", 502) == ("HTTP 502 (not the API's answer)", "")
    assert error_text(b"{]", "application/json", 400) == ("HTTP 400", "")


def test_the_real_429_body_pauses_at_least_a_minute() -> None:
    msg = "You reached the rate limit ... blocked for at least 1 minutes!"
    assert rate_limit_pause_s(msg, None) == RATE_LIMIT_PAUSE_S >= 60
    assert rate_limit_pause_s("blocked for at least 3 minutes", None) == 185
    assert rate_limit_pause_s("slow down", "120") == 120
    assert rate_limit_pause_s("slow down", "5") == RATE_LIMIT_PAUSE_S
    assert rate_limit_pause_s("blocked for at least 999 minutes", None) == 3600
