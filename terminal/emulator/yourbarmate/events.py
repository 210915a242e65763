"""Builders of yourbarmate webhook bodies (request-delivery, cancel-delivery) shaped as seed 002 prints them.

Every builder returns a JSON-ready dict. Sizes and counts are JSON numbers: an ``int`` where the value is
whole, a ``float`` only for the fractional sizes and counts of goods ordered by weight (INTEGRATION-NOTES.md,
yourbarmate part), as yourbarmate itself sends them. ``vessel_count`` is computed with ``Decimal`` so a
fractional count never picks up binary noise (2.5 × 6 is 15, not 14.999…).
"""

from __future__ import annotations

import copy
import json
import random
import secrets
import string
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

REQUEST_DELIVERY = "request-delivery"
CANCEL_DELIVERY = "cancel-delivery"
UNITS = ("l", "dl", "cl", "ml", "kg", "g", "quantity")
KEY_ALPHABET = (
    string.ascii_letters + string.digits + "_-"
)  # the seed's key "aJb5iQs18NrZqg3H-tiDq" is of these
KEY_LENGTH = 21

Number = int | float
Nullables = Literal["filled", "null", "missing"]
"""How nullable fields are sent: with a value, as JSON null, or left out (all three are valid)."""


def idempotency_key(rng: random.Random | None = None) -> str:
    """A fresh 21-character key like the seed's; from ``rng`` if given (reproducible), else ``secrets``."""
    pick = rng.choice if rng is not None else secrets.choice
    return "".join(pick(KEY_ALPHABET) for _ in range(KEY_LENGTH))


def to_wire(event: Mapping[str, Any]) -> bytes:
    """An event as yourbarmate sends it: JSON in UTF-8, non-ASCII letters (Zürich) as they are."""
    return json.dumps(event, ensure_ascii=False).encode()


def _number(value: Decimal) -> Number:
    """A JSON number: int when whole, else float (only fractional weights and counts get here)."""
    return int(value) if value == value.to_integral_value() else float(value)


def bundle(bundle_id: str, bundle_type: str, size: int) -> dict[str, Any]:
    """A bundle of ``size`` vessels, e.g. ``bundle("001", "CT", 6)`` for a carton of six."""
    return {"id": bundle_id, "type": bundle_type, "size": size}


def pallet(pallet_id: str, bundles: int, on_pallet: Mapping[str, Any]) -> dict[str, Any]:
    """A pallet (type ``PX``) of ``bundles`` times the bundle ``on_pallet``."""
    return {"id": pallet_id, "type": "PX", "size": bundles, "pallet_bundle": dict(on_pallet)}


def vessel_count(count: Number, bundle_json: Mapping[str, Any] | None) -> Number:
    """count × bundle.size (× pallet_bundle.size for a pallet), the seed's rule for ``vessel_count``."""
    total = Decimal(str(count))
    if bundle_json is not None:
        total *= Decimal(str(bundle_json["size"]))
        inner = bundle_json.get("pallet_bundle")
        if bundle_json.get("type") == "PX" and inner is not None:
            total *= Decimal(str(inner["size"]))
    return _number(total)


def item(
    product_id: str,
    name: str,
    *,
    size: Number,
    unit: str,
    vessel_type: str = "BO",
    count: Number = 1,
    bundle_json: Mapping[str, Any] | None = None,
    price_cents: int = 0,
    order_by: str | None = None,
    price_per: str | None = None,
    message: str | None = None,
    vessel_id: str | None = None,
) -> dict[str, Any]:
    """One item of a request: ``count`` bundles (or vessels without a bundle) of vessels of ``size`` ``unit``.

    ``price_cents`` is the expected unit price in cents. ``order_by``, ``price_per`` and ``message`` are
    left out unless given, as the seed says they are only present when set on the product.
    """
    vessel: dict[str, Any] = {"size": size, "unit": unit, "type": vessel_type}
    if vessel_id is not None:
        vessel = {"id": vessel_id, **vessel}
    out: dict[str, Any] = {"id": product_id, "name": name}
    if order_by is not None:
        out["order_by"] = order_by
    out["vessel"] = vessel
    out["count"] = count
    out["bundle"] = dict(bundle_json) if bundle_json is not None else None
    out["vessel_count"] = vessel_count(count, bundle_json)
    out["price"] = price_cents
    if price_per is not None:
        out["price_per"] = price_per
    if message is not None:
        out["message"] = message
    return out


def sample_items() -> list[dict[str, Any]]:
    """Items covering every unit, a bundle, a pallet, and fractional kg sizes and counts.

    Product ids: "2" gin (the seed's 7 dl bottles, carton of 6), "17" helles (20 l kegs), "21" cola
    (33 cl cans, pallet of 40 trays of 24), "30" espresso beans (0.5 kg bags ordered by kg, 2.5 of them),
    "31" lemons (counted by quantity), "32" syrup (700 ml bottles), "33" mint (250 g), "34" cider (5 dl).
    """
    return [
        item("2", "Gin", size=7, unit="dl", count=2, bundle_json=bundle("001", "CT", 6), price_cents=750),
        item("17", "Helles", size=20, unit="l", vessel_type="KG", count=3, price_cents=6400, vessel_id="K20"),
        item(
            "21",
            "Cola",
            size=33,
            unit="cl",
            vessel_type="CA",
            count=1,
            bundle_json=pallet("P1", 40, bundle("T24", "TR", 24)),
            price_cents=95,
        ),
        item(
            "30",
            "Espresso beans",
            size=0.5,
            unit="kg",
            vessel_type="BG",
            count=2.5,
            order_by="kg",
            price_cents=1900,
            price_per="kg",
        ),
        item("31", "Lemons", size=1, unit="quantity", vessel_type="PC", count=40, price_cents=30),
        item("32", "Syrup", size=700, unit="ml", count=4, price_cents=890, message="the sugar-free one"),
        item("33", "Mint", size=250, unit="g", vessel_type="BG", count=2, price_cents=450, price_per="100g"),
        item("34", "Cider", size=5, unit="dl", count=1, bundle_json=bundle("C12", "CR", 12), price_cents=310),
    ]


def _address(street: str, nullables: Nullables) -> dict[str, Any]:
    out: dict[str, Any] = {"address1": street}
    if nullables == "filled":
        out["address2"] = "Hintereingang"
    out.update({"zip": "8045", "city": "Zürich", "country": "CH"})
    return out


def _nullable(out: dict[str, Any], name: str, value: Any, nullables: Nullables) -> None:
    if nullables == "filled":
        out[name] = value
    elif nullables == "null":
        out[name] = None


def request_delivery(
    delivery_id: int,
    items: Sequence[Mapping[str, Any]],
    *,
    delivery_type: Literal["DELIVERY", "RETURN"] = "DELIVERY",
    nullables: Nullables = "filled",
    key: str | None = None,
    rng: random.Random | None = None,
    timestamp: str = "2026-06-23T14:46:48.309Z",
) -> dict[str, Any]:
    """A ``request-delivery`` event for delivery ``delivery_id``, with a fresh idempotency key unless ``key``.

    ``nullables`` decides how ``company``, ``cost_center``, ``scheduled``, ``address2`` and the optional
    messages are sent (filled, null, or missing); the seed allows each.
    """
    customer: dict[str, Any] = {"id": "12345"}
    _nullable(customer, "company", "Mein Club AG", nullables)
    customer["address"] = _address("Beispielstrasse 1", nullables)
    customer["contact"] = {"name": "Besitzer", "email": "besitzer@mein-club.ch"}
    request: dict[str, Any] = {"timestamp": timestamp}
    _nullable(request, "company", "Mein Club AG", nullables)
    request["customer_id"] = "12345"
    _nullable(request, "cost_center", "Bar 1", nullables)
    request["address"] = _address("Beispielstrasse 42", nullables)
    request["user"] = {"name": "Lagerist", "email": "lagerist@mein-club.ch"}
    _nullable(request, "scheduled", {"date": "2026-06-26", "time": "12:30"}, nullables)
    request["items"] = [dict(i) for i in items]
    if nullables == "filled":
        request["message"] = "Vielen Dank!"
    return {
        "type": REQUEST_DELIVERY,
        "idempotency_key": key if key is not None else idempotency_key(rng),
        "data": {
            "id": delivery_id,
            "type": delivery_type,
            "status": "REQUESTED",
            "customer": customer,
            "request": request,
        },
    }


def cancel_delivery(
    request: Mapping[str, Any], *, key: str | None = None, rng: random.Random | None = None
) -> dict[str, Any]:
    """The ``cancel-delivery`` event calling off ``request``: its data with status CANCELLED, a fresh key.

    The seed documents only request-delivery; yourbarmate's cancel carries the same data with status
    ``CANCELLED`` (INTEGRATION-NOTES.md), so the receiver finds the delivery by ``data.id``.
    """
    data = copy.deepcopy(dict(request["data"]))
    data["status"] = "CANCELLED"
    return {
        "type": CANCEL_DELIVERY,
        "idempotency_key": key if key is not None else idempotency_key(rng),
        "data": data,
    }
