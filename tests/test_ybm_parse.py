"""yourbarmate's bodies (seed 002 and INTEGRATION-NOTES) parsed into events, every unit in whole ml, g or
pieces; and a fuzz test: no input makes the parser raise anything but its own EventError."""

from __future__ import annotations

import contextlib
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terminal.yourbarmate.event import CancelEvent, DeliveryEvent
from terminal.yourbarmate.parse import EventError, parse_body
from terminal.yourbarmate.units import UnitError, parse_quantity, whole_amount
from tests.ybm_lab import SEED_EXAMPLE, cancel_event, item, request_event


def parse(doc: Any) -> Any:
    return parse_body(json.dumps(doc).encode())


def test_the_seed_example_is_twelve_bottles_of_seven_decilitres_of_gin() -> None:
    event = parse(SEED_EXAMPLE)
    assert isinstance(event, DeliveryEvent)
    assert (event.idempotency_key, event.delivery_id, event.delivery_type) == (
        "aJb5iQs18NrZqg3H-tiDq",
        "123456789",
        "DELIVERY",
    )
    (gin,) = event.items
    assert (gin.product_id, gin.name, gin.amount, gin.measure) == ("2", "Gin", 8400, "ml")


@pytest.mark.parametrize(
    ("unit", "size", "vessels", "amount", "measure"),
    [
        ("l", 50, 2, 100_000, "ml"),
        ("dl", 7, 12, 8400, "ml"),
        ("cl", 70, 6, 4200, "ml"),
        ("ml", 330, 24, 7920, "ml"),
        ("kg", "2.5", 3, 7500, "g"),  # fractional kg sizes (notes)
        ("kg", "0.3333", 1, 333, "g"),  # 333.3 g rounds to 333
        ("g", 250, "1.5", 375, "g"),  # a fractional count for goods by weight
        ("g", "0.5", 1, 1, "g"),  # half a gram rounds half up
        ("quantity", 1, 40, 40, "pieces"),
    ],
)
def test_every_unit_of_the_seed_becomes_whole_ml_g_or_pieces(
    unit: str, size: Any, vessels: Any, amount: int, measure: str
) -> None:
    raw = json.dumps(request_event("k", 1, [item("9", 0, 0, unit)]))
    raw = raw.replace('"size": 0', f'"size": {size}').replace(
        '"vessel_count": 0', f'"vessel_count": {vessels}'
    )
    raw = raw.replace('"count": 0', f'"count": {vessels}')
    event = parse_body(raw.encode())
    assert isinstance(event, DeliveryEvent)
    assert (event.items[0].amount, event.items[0].measure) == (amount, measure)


def test_nullable_fields_may_be_null_or_missing_and_unknown_fields_are_ignored() -> None:
    doc = request_event("k", "D-1", [item("2", 1, 7, "dl")])
    request = doc["data"]["request"]
    request["scheduled"] = None
    request.pop("address")
    doc["data"]["customer"]["company"] = None
    request["cost_center"] = None
    request["brand_new_field"] = {"anything": [1, 2]}
    request["items"][0]["bundle"] = None
    request["items"][0].pop("vessel_count")  # without a bundle, the count is the vessels
    doc["data"].pop("customer")
    event = parse(doc)
    assert isinstance(event, DeliveryEvent) and event.items[0].amount == 700


def test_goods_ordered_by_weight_without_a_vessel_count_kilograms() -> None:
    doc = request_event("k", 1, [{"id": "30", "name": "Nüsse", "order_by": "kg", "count": 2.25}])
    event = parse(doc)
    assert isinstance(event, DeliveryEvent) and (event.items[0].amount, event.items[0].measure) == (2250, "g")


def test_a_cancel_needs_only_its_delivery_id() -> None:
    event = parse(cancel_event("c1", 42))
    assert event == CancelEvent("c1", "42", None)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["data"]["request"]["items"][0]["vessel"].update(unit="pint"), "items[0].vessel.unit"),
        (lambda d: d["data"]["request"]["items"][0]["vessel"].update(size="7"), "items[0].vessel.size"),
        (lambda d: d["data"]["request"]["items"][0]["vessel"].update(size=-1), "items[0].vessel.size"),
        (lambda d: d["data"]["request"]["items"][0].update(vessel_count=True), "items[0].vessel_count"),
        (lambda d: d["data"]["request"]["items"][0].pop("vessel"), "items[0].vessel"),
        (lambda d: d["data"].update(type="GIFT"), "data.type"),
        (lambda d: d["data"].update(id=None), "data.id"),
        (lambda d: d["data"].update(id=1.5), "data.id"),
        (lambda d: d.update(type="refund"), "type"),
        (lambda d: d["data"]["request"].update(items=None), "data.request.items"),
    ],
)
def test_a_wrong_field_is_refused_naming_it_and_keeping_the_key(change: Any, field: str) -> None:
    doc = json.loads(json.dumps(SEED_EXAMPLE))
    change(doc)
    with pytest.raises(EventError) as caught:
        parse(doc)
    assert field in str(caught.value)
    assert caught.value.idempotency_key == "aJb5iQs18NrZqg3H-tiDq"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'{"type": "request-delivery"}',
        b"\xff\xfe",
        b'{"idempotency_key": NaN}',
        b"[" * 100_000,
        b'{"idempotency_key": "k", "x": ' + b"9" * 5000 + b"}",
    ],
)
def test_bodies_that_are_no_event_raise_only_event_error(body: bytes) -> None:
    with pytest.raises(EventError):
        parse_body(body)


def test_amounts_are_decimal_never_float() -> None:
    # 0.1 + 0.2 in binary floating point is 0.30000000000000004: three 0.1 l bottles must be 300 ml
    assert whole_amount(Decimal(3), Decimal("0.1"), "l") == 300
    with pytest.raises(UnitError):
        whole_amount(Decimal(1), Decimal(0), "l")


@pytest.mark.parametrize(
    ("text", "measure", "amount"),
    [
        ("20l", "ml", 20_000),
        ("500ml", "ml", 500),
        ("1.5 l", "ml", 1500),
        ("3kg", "g", 3000),
        ("250g", "g", 250),
        ("12", "pieces", 12),
        ("0", "ml", 0),
        ("0,7l", "ml", 700),
    ],
)
def test_a_stock_count_takes_a_unit_suffix(text: str, measure: Any, amount: int) -> None:
    assert parse_quantity(text, measure) == amount


@pytest.mark.parametrize(
    ("text", "measure"), [("20", "ml"), ("3kg", "ml"), ("2l", "g"), ("x", "ml"), ("-1l", "ml"), ("5pt", "ml")]
)
def test_a_stock_count_in_the_wrong_unit_is_refused(text: str, measure: Any) -> None:
    with pytest.raises(UnitError):
        parse_quantity(text, measure)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.decimals(allow_nan=False, allow_infinity=False).map(str),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)


def _mutated(value: Any, path: list[str]) -> Any:
    """The seed's example with one field (by path) replaced by ``value``."""
    doc = json.loads(json.dumps(SEED_EXAMPLE))
    target: Any = doc
    for part in path[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(path[-1])] = value
    else:
        target[path[-1]] = value
    return doc


FIELDS = [
    ["idempotency_key"],
    ["type"],
    ["data"],
    ["data", "id"],
    ["data", "type"],
    ["data", "request"],
    ["data", "request", "items"],
    ["data", "request", "items", "0"],
    ["data", "request", "items", "0", "vessel"],
    ["data", "request", "items", "0", "vessel", "size"],
    ["data", "request", "items", "0", "vessel", "unit"],
    ["data", "request", "items", "0", "vessel_count"],
    ["data", "request", "items", "0", "count"],
    ["data", "request", "items", "0", "order_by"],
    ["data", "request", "items", "0", "bundle"],
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(FIELDS), JSON)
def test_fuzz_any_value_in_any_field_raises_nothing_but_event_error(path: list[str], value: Any) -> None:
    with contextlib.suppress(EventError):
        parse(_mutated(value, path))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()))
def test_fuzz_any_bytes_raise_nothing_but_event_error(body: bytes) -> None:
    with contextlib.suppress(EventError):
        parse_body(body)


def _gin(**changes: Any) -> dict[str, Any]:
    """The seed's gin item (2 cartons of 6 bottles, vessel_count 12) with ``changes``."""
    doc = json.loads(json.dumps(SEED_EXAMPLE))
    doc["data"]["request"]["items"][0].update(changes)
    return dict(doc)


@pytest.mark.parametrize(
    ("changes", "vessels"),
    [
        ({}, 12),
        ({"vessel_count": None}, 12),  # missing: the seed's rule gives it
        ({"count": 12, "bundle": None}, 12),
        (
            {
                "count": 2,
                "bundle": {"type": "PX", "size": 4, "pallet_bundle": {"type": "CT", "size": 6}},
                "vessel_count": 48,
            },
            48,
        ),
    ],
)
def test_count_times_the_bundle_gives_the_vessels(changes: dict[str, Any], vessels: int) -> None:
    event = parse(_gin(**changes))
    assert isinstance(event, DeliveryEvent)
    assert event.items[0].amount == vessels * 700


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"count": 3}, "count 3 × the bundle is 18 vessels, but vessel_count is 12"),
        ({"count": 12}, "count 12 × the bundle is 72 vessels"),  # vessel_count read, count ignored
        ({"bundle": None}, "count 2 × the bundle is 2 vessels, but vessel_count is 12"),
        ({"bundle": {"type": "PX", "size": 2}}, "pallet_bundle is missing"),
        ({"bundle": {"type": "CT"}}, "bundle.size is missing"),
        ({"vessel_count": 1e308, "count": 1e308}, "at most 1000000"),
        ({"vessel_count": 2_000_000, "count": 2_000_000, "bundle": None}, "at most 1000000"),
    ],
)
def test_a_count_that_disagrees_or_is_absurd_is_refused_saying_why(
    changes: dict[str, Any], said: str
) -> None:
    with pytest.raises(EventError, match=re.escape(said)):
        parse(_gin(**changes))


def test_thousands_of_digits_are_refused_naming_the_field() -> None:
    raw = json.dumps(_gin()).replace('"vessel_count": 12', '"vessel_count": ' + "9" * 5000)
    with pytest.raises(EventError, match=r"items\[0\]\.vessel_count is .*at most 1000000"):
        parse_body(raw.encode())


def test_goods_by_weight_are_not_held_to_the_bundle_rule() -> None:
    # order_by kg: count is kilograms (2.4 kg in 3 bags of 800 g), so it is not compared to the vessels
    doc = _gin(order_by="kg", count=2.4, bundle=None, vessel_count=3, vessel={"size": 800, "unit": "g"})
    event = parse(doc)
    assert isinstance(event, DeliveryEvent) and event.items[0].amount == 2400


def test_a_long_delivery_id_is_called_too_long() -> None:
    doc = _gin()
    doc["data"]["id"] = "x" * 5000
    with pytest.raises(EventError, match=r"data\.id is too long \(5000 characters, at most 100\)"):
        parse(doc)
    doc["data"]["id"] = int("7" * 40)
    with pytest.raises(EventError, match=r"data\.id is too long \(40 digits, at most 30\)"):
        parse(doc)


@pytest.mark.parametrize(
    ("text", "measure", "said"),
    [
        ("2.5", "pieces", "'2.5' is not a whole number of pieces"),
        ("0.0004l", "ml", "'0.0004l' is less than half a ml and would be recorded as 0"),
        ("0.4g", "g", "less than half a g"),
        ("-1l", "ml", "'-1l' is below zero"),
        ("-3", "pieces", "'-3' is below zero"),
    ],
)
def test_a_count_that_would_be_rounded_away_or_is_negative_is_refused(
    text: str, measure: Any, said: str
) -> None:
    with pytest.raises(UnitError, match=re.escape(said)):
        parse_quantity(text, measure)


def test_a_delivery_of_half_a_piece_or_of_a_rounded_away_amount_is_refused() -> None:
    with pytest.raises(UnitError, match="not a whole number of pieces"):
        whole_amount(Decimal("0.5"), Decimal(1), "quantity")  # half a lemon is not one lemon
    with pytest.raises(UnitError, match="rounds to 0 g"):
        whole_amount(Decimal(1), Decimal("0.0004"), "kg")
    assert whole_amount(Decimal(3), Decimal("0.3333"), "kg") == 1000  # by weight: rounded to the gram
