"""Bodies a yourbarmate receiver must refuse or quarantine without changing stock: nulls, wrong types, …

Each is built from a valid event with a fresh idempotency key (so none is mistaken for a duplicate of
another), then spoilt in one place. The receiver's answer differs by kind (issue 15): a JSON body that
fails validation is quarantined and answered 200; non-JSON is 415; a body over 64 KiB is 413.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from terminal.emulator.yourbarmate.events import idempotency_key, to_wire

ONE_MB = 1024 * 1024
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class BadBody:
    """One spoilt body: ``name`` (for the summary), the bytes and Content-Type sent, and what is wrong."""

    name: str
    body: bytes
    content_type: str
    why: str
    key: str | None  # the idempotency key inside it, when it still has one


def _spoil(
    event: Mapping[str, Any], change: Callable[[dict[str, Any]], None], rng: random.Random | None
) -> dict[str, Any]:
    out = copy.deepcopy(dict(event))
    out["idempotency_key"] = idempotency_key(rng)
    change(out)
    return out


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        node: Any = event
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value

    return change


_ITEM = ("data", "request", "items", 0)
_SPOILS: tuple[tuple[str, tuple[str | int, ...], Any, str], ...] = (
    ("null_delivery_id", ("data", "id"), None, "data.id is null; it is not nullable"),
    ("null_items", ("data", "request", "items"), None, "data.request.items is null"),
    ("null_vessel_unit", (*_ITEM, "vessel", "unit"), None, "items[0].vessel.unit is null"),
    ("null_key", ("idempotency_key",), None, "idempotency_key is null"),
    ("count_as_text", (*_ITEM, "count"), "two", "items[0].count is a string"),
    ("size_as_text", (*_ITEM, "vessel", "size"), "7 dl", "items[0].vessel.size is a string"),
    ("items_as_object", ("data", "request", "items"), {"0": "Gin"}, "data.request.items is an object"),
    ("negative_count", (*_ITEM, "count"), -2, "items[0].count is negative"),
    ("unknown_unit", (*_ITEM, "vessel", "unit"), "gallon", "items[0].vessel.unit is not a seed unit"),
    ("unknown_delivery_type", ("data", "type"), "PICKUP", "data.type is neither DELIVERY nor RETURN"),
    ("unknown_event_type", ("type",), "delete-delivery", "type is not an event yourbarmate sends"),
)


def bad_bodies(event: Mapping[str, Any], rng: random.Random | None = None) -> list[BadBody]:
    """Every spoilt variant of the valid request-delivery ``event`` (which must have at least one item)."""
    out: list[BadBody] = []
    for name, path, value, why in _SPOILS:
        spoilt = _spoil(event, _set(path, value), rng)
        key = spoilt["idempotency_key"] if isinstance(spoilt["idempotency_key"], str) else None
        out.append(BadBody(name, to_wire(spoilt), JSON_TYPE, why, key))
    big = _spoil(event, lambda e: None, rng)
    base = len(to_wire(big))
    big["data"]["request"]["message"] = "x" * (ONE_MB - base + 64)  # lands just over 1 MiB
    out.append(
        BadBody(
            "one_megabyte",
            to_wire(big),
            JSON_TYPE,
            "valid JSON over 1 MiB",
            big["idempotency_key"],
        )
    )
    out.append(
        BadBody(
            "not_json",
            b"type=request-delivery&id=1",
            "application/x-www-form-urlencoded",
            "a form, not JSON",
            None,
        )
    )
    out.append(BadBody("broken_json", to_wire(event)[:-7], JSON_TYPE, "JSON cut short", None))
    out.append(BadBody("json_array", b"[]", JSON_TYPE, "a JSON array, not an event object", None))
    return out
