"""Partybroker's typed values: drinks, sales, and the outcomes of a call (expected conditions are values)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class DrinkRef:
    """Which Partybroker drink a sale is for: its Partybroker ``id`` or the POS's ``externalId``."""

    id: int | None = None
    external_id: str | None = None

    def __post_init__(self) -> None:
        if (self.id is None) == (self.external_id is None):
            raise ValueError("a DrinkRef needs exactly one of id or external_id")

    def matches(self, drink: Drink) -> bool:
        if self.id is not None:
            return drink.id == self.id
        return drink.external_id is not None and drink.external_id == self.external_id

    def __str__(self) -> str:
        return f"id {self.id}" if self.id is not None else f"externalId {self.external_id!r}"


@dataclass(frozen=True)
class Sale:
    """``quantity`` units of one drink, as one item of a Buy Drinks request."""

    drink: DrinkRef
    quantity: int

    def __post_init__(self) -> None:
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity < 1:
            raise ValueError(f"a sale's quantity must be a positive whole number, got {self.quantity!r}")

    def wire(self) -> dict[str, object]:
        if self.drink.id is not None:
            return {"id": self.drink.id, "quantity": self.quantity}
        return {"externalId": self.drink.external_id, "quantity": self.quantity}


@dataclass(frozen=True)
class Drink:
    """One drink as the party lists it; ``price_cents`` is the current market price."""

    id: int
    external_id: str | None
    title: str
    price_cents: int
    currency: str | None


@dataclass(frozen=True)
class Drinks:
    """2xx with a usable list: all drinks (GET) or the drinks just sold with their new prices (POST)."""

    drinks: tuple[Drink, ...]


@dataclass(frozen=True)
class Recorded:
    """POST answered 2xx, so the party took the sale, but the body carried no usable prices."""

    reason: str


@dataclass(frozen=True)
class Unauthorized:
    """401: the API credentials are wrong; a configuration problem, not the sale's."""

    reason: str


@dataclass(frozen=True)
class Rejected:
    """A definitive refusal (400, 403, 404, ...): sending the same request again will not help."""

    status: int
    reason: str


@dataclass(frozen=True)
class Ambiguous:
    """No definitive answer: timeout, connection trouble, 5xx, 429, or a body that isn't the API's.

    ``maybe_applied`` is False only when a POST provably had no effect (it never reached the server,
    or the server answered 429/3xx), and always False for a GET, which changes nothing.
    """

    reason: str
    retry_after: float | None = None
    maybe_applied: bool = True


DrinksOutcome = Drinks | Unauthorized | Rejected | Ambiguous
BuyOutcome = Drinks | Recorded | Unauthorized | Rejected | Ambiguous
Method = Literal["GET", "POST"]
