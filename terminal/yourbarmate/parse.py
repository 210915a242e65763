"""yourbarmate webhook bodies (seed 002 and INTEGRATION-NOTES) -> DeliveryEvent or CancelEvent.

Unknown fields are ignored and nullable fields may be missing; anything the ledger needs that is wrong
raises EventError naming the field (``data.request.items[0].vessel.unit``). JSON numbers are read as
Decimal (fractional sizes and counts for goods by weight), NaN and Infinity are refused.
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


class EventError(ValueError):
    """The body is not an event the ledger can apply; the message names the field and says why."""

    def __init__(self, message: str, idempotency_key: str | None = None) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key  # when the body had a usable one (for the quarantine row)


def parse_body(body: bytes) -> Event:
    """Decode and validate one webhook body (UTF-8 JSON); raises EventError and nothing else."""
    try:
        doc = json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=_no_constant)
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
    if isinstance(value, str) and value and len(value) <= MAX_ID_CHARS and value.isprintable():
        return value
    raise EventError(f"{where} is missing or not a string or whole number")


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
    if vessels is None:  # the total of vessels; without it only an unbundled count says how many
        if item.get("bundle") is not None or count is None:
            raise EventError(f"{where}.vessel_count is missing and the item has a bundle or no count")
        vessels = count
    amount = _amount(vessels, size, unit, f"{where}")
    return DeliveryItem(product, shown, amount, measure, f"{vessels} × {size} {unit}")


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
    if not number.is_finite() or number <= 0:
        raise EventError(f"{where} is {_shown(value)}; expected a number above 0")
    return number


def _amount(count: Decimal, size: Decimal, unit: str, where: str) -> int:
    try:
        return whole_amount(count, size, unit)
    except (UnitError, ArithmeticError) as exc:
        raise EventError(f"{where}: {printable(str(exc), 120)}") from None


def _shown(value: object) -> str:
    """A value as an error names it: short and printable (it came from outside)."""
    return "missing" if value is None else printable(repr(value), 40)
