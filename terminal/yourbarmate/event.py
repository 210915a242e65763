"""yourbarmate's webhook events as typed values, with every amount in whole ml, g or pieces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from terminal.yourbarmate.units import Measure

DeliveryType = Literal["DELIVERY", "RETURN"]
REQUEST = "request-delivery"
CANCEL = "cancel-delivery"


@dataclass(frozen=True)
class DeliveryItem:
    """One line of a request: a yourbarmate product and how much of it (``amount`` in ``measure``)."""

    product_id: str  # yourbarmate's product id, as text
    name: str  # printable, cut to 100 characters
    amount: int  # whole ml, g or pieces (units.py says how it is rounded)
    measure: Measure
    vessels: str  # what was ordered, for people: "12 × 7 dl"


@dataclass(frozen=True)
class DeliveryEvent:
    """``request-delivery``: a venue asked for goods (DELIVERY) or for empties to be taken back (RETURN)."""

    idempotency_key: str
    delivery_id: str
    delivery_type: DeliveryType
    items: tuple[DeliveryItem, ...]

    kind: ClassVar[str] = REQUEST


@dataclass(frozen=True)
class CancelEvent:
    """``cancel-delivery``: the request with ``delivery_id`` was called off (it may not have come yet)."""

    idempotency_key: str
    delivery_id: str
    delivery_type: DeliveryType | None

    kind: ClassVar[str] = CANCEL


Event = DeliveryEvent | CancelEvent
