"""yourbarmate webhook bodies (seed 002 and INTEGRATION-NOTES) -> DeliveryEvent or CancelEvent.

Unknown fields are ignored and nullable fields may be missing; anything the ledger needs that is wrong
raises EventError naming the field (``data.request.items[0].vessel.unit``). JSON numbers are read as
Decimal (fractional sizes and counts for goods by weight), NaN and Infinity are refused.

An item's ``count`` (bundles, or vessels without a bundle) must agree with its ``vessel_count`` by the
seed's rule: ``vessel_count = count × bundle.size`` (``× bundle.pallet_bundle.size`` for a "PX" pallet),
exactly, or the body is quarantined (one of the two is wrong and the ledger cannot tell which). Goods
ordered by weight (``order_by = "kg"``) are the exception: their ``count`` is kilograms, not bundles, so it
is not compared; the vessels (or, without a vessel, the kilograms) are the amount. No count or size may be
above ``MAX_NUMBER`` (a million vessels in one item is a broken payload, not an order).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from terminal.model import printable
from terminal.yourbarmate.event import CANCEL, REQUEST, CancelEvent, DeliveryEvent, DeliveryItem, Event
from terminal.yourbarmate.units import UnitError, measure_of, whole_amount

MAX_KEY_CHARS = 200
MAX_ID_CHARS = 100
MAX_ITEMS = 500
MAX_NUMBER = 10**6  # vessels, bundles or a vessel's size in one item; more is a broken payload
MAX_INT_DIGITS = 30  # a JSON integer longer than this is read as a Decimal, so a bound names it


class EventError(ValueError):
    """The body is not an event the ledger can apply; the message names the field and says why."""

    def __init__(self, message: str, idempotency_key: str | None = None) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key  # when the body had a usable one (for the quarantine row)


def parse_body(body: bytes) -> Event:
    """Decode and validate one webhook body (UTF-8 JSON); raises EventError and nothing else."""
    try:
        doc = json.loads(
            body.decode("utf-8"), parse_float=Decimal, parse_int=_int, parse_constant=_no_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EventError(f"body is not UTF-8 JSON: {printable(str(exc), 120)}") from None
    return parse_event(doc)


def parse_event(doc: object) -> Event:
    """Validate a decoded JSON document (numbers as int or Decimal); raises EventError."""
    if not isinstance(doc, Mapping):
        raise EventError("body is not a JSON object")
    key = _key(doc)
    try:
        kind = _text(doc, "type", "type", MAX_ID_CHARS)
        data = _object(doc, "data", "data")
        delivery_id = _id(data, "id", "data.id")
        if kind == REQUEST:
            dtype = _delivery_type(data, "data.type", required=True)
            assert dtype is not None
            request = _object(data, "request", "data.request")
            items = _items(request)
            return DeliveryEvent(key, delivery_id, dtype, items)
        if kind == CANCEL:
            return CancelEvent(key, delivery_id, _delivery_type(data, "data.type", required=False))
        raise EventError(f"type is {printable(kind, 40)!r}; expected {REQUEST!r} or {CANCEL!r}")
    except EventError as exc:
        raise EventError(str(exc), key) from None


def _int(text: str) -> int | Decimal:
    """A JSON integer; one of thousands of digits becomes a Decimal (Python's int refuses to read it past
    4300 digits, which would name no field), and the field's own check then refuses it."""
    return int(text) if len(text) <= MAX_INT_DIGITS else Decimal(text)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON allows")


def _key(doc: Mapping[str, Any]) -> str:
    key = doc.get("idempotency_key")
    if not isinstance(key, str) or not key.strip():
        raise EventError("idempotency_key is missing or not a non-empty string")
    if len(key) > MAX_KEY_CHARS or not key.isprintable():
        raise EventError(f"idempotency_key is longer than {MAX_KEY_CHARS} characters or not printable")
    return key


def _object(doc: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = doc.get(name)
    if not isinstance(value, Mapping):
        raise EventError(f"{where} is missing or not an object")
    return value


def _text(doc: Mapping[str, Any], name: str, where: str, limit: int) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise EventError(f"{where} is missing or not a non-empty string")
    if len(value) > limit:
        raise EventError(f"{where} is longer than {limit} characters")
    return value


def _id(doc: Mapping[str, Any], name: str, where: str) -> str:
    """An identifier given as a string or a whole number (the seed's delivery id is a number)."""
    value = doc.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, Decimal) and value == value.to_integral_value() and value.is_finite():
        raise EventError(f"{where} is too long ({len(str(value))} digits, at most {MAX_INT_DIGITS})")
    if isinstance(value, str) and len(value) > MAX_ID_CHARS:
        raise EventError(f"{where} is too long ({len(value)} characters, at most {MAX_ID_CHARS})")
    if isinstance(value, str) and value and value.isprintable():
        return value
    raise EventError(f"{where} is missing or not a printable string or whole number")


def _delivery_type(doc: Mapping[str, Any], where: str, *, required: bool) -> Any:
    value = doc.get("type")
    if value is None and not required:
        return None
    if value in ("DELIVERY", "RETURN"):
        return value
    raise EventError(f"{where} is {_shown(value)}; expected 'DELIVERY' or 'RETURN'")


def _items(request: Mapping[str, Any]) -> tuple[DeliveryItem, ...]:
    items = request.get("items")
    if not isinstance(items, list):
        raise EventError("data.request.items is missing or not a list")
    if len(items) > MAX_ITEMS:
        raise EventError(f"data.request.items has more than {MAX_ITEMS} items")
    return tuple(_item(item, f"data.request.items[{i}]") for i, item in enumerate(items))


def _item(item: object, where: str) -> DeliveryItem:
    if not isinstance(item, Mapping):
        raise EventError(f"{where} is not an object")
    product = _id(item, "id", f"{where}.id")
    name = item.get("name")
    shown = printable(name, 100) if isinstance(name, str) else ""
    vessel = item.get("vessel")
    count = _number(item, "count", f"{where}.count", required=vessel is None)
    if vessel is None:
        # Goods ordered by weight may come without a vessel: the count is then kilograms.
        if item.get("order_by") != "kg":
            raise EventError(f"{where}.vessel is missing and order_by is not 'kg'; cannot tell the amount")
        assert count is not None
        return DeliveryItem(product, shown, _amount(count, Decimal(1), "kg", where), "g", f"{count} kg")
    if not isinstance(vessel, Mapping):
        raise EventError(f"{where}.vessel is not an object")
    unit = vessel.get("unit")
    if not isinstance(unit, str):
        raise EventError(f"{where}.vessel.unit is {_shown(unit)}; expected a unit string")
    try:
        measure = measure_of(unit)
    except UnitError as exc:
        raise EventError(f"{where}.vessel.unit: {printable(str(exc), 120)}") from None
    size = _number(vessel, "size", f"{where}.vessel.size", required=True)
    assert size is not None
    vessels = _number(item, "vessel_count", f"{where}.vessel_count", required=False)
    by_weight = item.get("order_by") == "kg"
    if count is not None and not by_weight:
        counted = count * _bundle_factor(item.get("bundle"), f"{where}.bundle")
        if vessels is None:
            vessels = counted
        elif counted != vessels:
            raise EventError(
                f"{where}: count {count} × the bundle is {counted} vessels, but vessel_count is {vessels};"
                " the two must agree"
            )
    if vessels is None:
        raise EventError(f"{where}.vessel_count and count are missing; cannot tell how many vessels")
    if vessels > MAX_NUMBER:
        raise EventError(f"{where}: {vessels} vessels is more than {MAX_NUMBER}; a broken payload")
    amount = _amount(vessels, size, unit, f"{where}")
    return DeliveryItem(product, shown, amount, measure, f"{vessels} × {size} {unit}")


def _bundle_factor(bundle: object, where: str) -> Decimal:
    """Vessels per counted unit: 1 without a bundle, ``size`` of a bundle, ``size × pallet_bundle.size``
    of a pallet (type "PX"), as the seed defines ``vessel_count``."""
    if bundle is None:
        return Decimal(1)
    if not isinstance(bundle, Mapping):
        raise EventError(f"{where} is not an object or null")
    size = _number(bundle, "size", f"{where}.size", required=True)
    assert size is not None
    if bundle.get("type") != "PX":
        return size
    pallet = bundle.get("pallet_bundle")
    if not isinstance(pallet, Mapping):
        raise EventError(f"{where}.pallet_bundle is missing or not an object, and type is 'PX'")
    inner = _number(pallet, "size", f"{where}.pallet_bundle.size", required=True)
    assert inner is not None
    return size * inner


def _number(doc: Mapping[str, Any], name: str, where: str, *, required: bool) -> Decimal | None:
    value = doc.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise EventError(f"{where} is {_shown(value)}; expected a number")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise EventError(f"{where} is not a number") from None
    if not number.is_finite() or number <= 0 or number > MAX_NUMBER:
        raise EventError(f"{where} is {_shown(value)}; expected a number above 0 and at most {MAX_NUMBER}")
    return number


def _amount(count: Decimal, size: Decimal, unit: str, where: str) -> int:
    try:
        return whole_amount(count, size, unit)
    except (UnitError, ArithmeticError) as exc:
        raise EventError(f"{where}: {printable(str(exc), 120)}") from None


def _shown(value: object) -> str:
    """A value as an error names it: short and printable (it came from outside)."""
    return "missing" if value is None else printable(repr(value), 40)
