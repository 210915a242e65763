"""The emulated account's catalog: products, payment methods, VAT rates and users, listed as bare arrays.

Products come in pages (``page`` from 1, ``limit`` up to 250), unless ``ignore_paging`` makes every page the
whole list, as a server that ignores ``page`` would. Prices go out as JSON numbers, strings, or ``mixed``
(every other product's as a string), as the real API's vary. The catalog never changes once made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from terminal.emulator.ready2order.wire import Answer, api_error

MAX_PAGE = 250
PriceStyle = str  # "number", "string" or "mixed" (every other product's price as a string)


@dataclass(frozen=True)
class EmulatedProduct:
    """One product; with no ``vat_id`` only ``product_vat`` (``vat_percent``) says its rate."""

    id: int
    name: str
    price: Decimal  # euros, gross
    vat_id: int | None
    external_reference: str | None = None
    item_number: str | None = None
    vat_percent: Decimal | None = None


DEFAULT_PRODUCTS: tuple[EmulatedProduct, ...] = (
    EmulatedProduct(111, "Espresso", Decimal("2.50"), 2, "espresso", "1001"),
    EmulatedProduct(112, "Cappuccino", Decimal("3.20"), 2, "cappuccino", "1002"),
    EmulatedProduct(113, "Bier 0,5", Decimal("4.50"), 1, None, "2001"),
    EmulatedProduct(114, "Guthaben", Decimal("0.00"), 4, "topup", "9001"),
)
DEFAULT_PAYMENT_METHODS: dict[int, str] = {1: "Bar", 2: "Bankomat", 3: "Wallet"}
DEFAULT_VAT_RATES: dict[int, Decimal] = {
    1: Decimal("20"),
    2: Decimal("10"),
    3: Decimal("13"),
    4: Decimal("0"),
}
DEFAULT_USERS: dict[int, str] = {1: "Chef", 5678: "taptill"}  # id → first and last name


class Catalog:
    """What the account sells and how it is paid; answers (status, JSON value)."""

    def __init__(
        self,
        *,
        products: Iterable[EmulatedProduct] = DEFAULT_PRODUCTS,
        payment_methods: Mapping[int, str] | None = None,
        vat_rates: Mapping[int, Decimal] | None = None,
        users: Mapping[int, str] | None = None,
        price_style: PriceStyle = "mixed",
        ignore_paging: bool = False,
    ) -> None:
        if price_style not in ("number", "string", "mixed"):
            raise ValueError(f"price_style {price_style!r}: use 'number', 'string' or 'mixed'")
        self.products = tuple(products)
        self.payment_methods = dict(payment_methods or DEFAULT_PAYMENT_METHODS)
        self.vat_rates = dict(vat_rates or DEFAULT_VAT_RATES)
        self.users = dict(users or DEFAULT_USERS)
        self.price_style = price_style
        self.ignore_paging = ignore_paging

    def has_product(self, product_id: object) -> bool:
        return any(p.id == product_id for p in self.products)

    def list_products(self, page: int, limit: int) -> Answer:
        if page < 1 or not 1 <= limit <= MAX_PAGE:
            return api_error(400, f"page must be 1 or more and limit between 1 and {MAX_PAGE}")
        listed = [self._product(p, n) for n, p in enumerate(self.products)]
        if self.ignore_paging:
            return 200, listed
        start = (page - 1) * limit
        return 200, listed[start : start + limit]

    def list_payment_methods(self) -> Answer:
        return 200, [
            {"payment_id": pid, "payment_name": name, "payment_markAsPaid": True, "payment_type_id": 1}
            for pid, name in self.payment_methods.items()
        ]

    def list_vat_rates(self) -> Answer:
        return 200, [
            {"id": vid, "value": float(rate), "name": f"{rate}%", "isDefault": vid == 1}
            for vid, rate in self.vat_rates.items()
        ]

    def list_users(self) -> Answer:
        listed = []
        for uid, name in self.users.items():
            first, _, last = name.partition(" ")
            username = f"{first.lower() or uid}@example.invalid"
            listed.append(
                {"user_id": uid, "user_username": username, "user_firstName": first, "user_lastName": last}
            )
        return 200, listed

    def _money(self, amount: Decimal, n: int) -> float | str:
        as_string = self.price_style == "string" or (self.price_style == "mixed" and n % 2 == 1)
        return str(amount) if as_string else float(amount)

    def _product(self, p: EmulatedProduct, n: int) -> dict[str, Any]:
        percent = self.vat_rates.get(p.vat_id, Decimal(0)) if p.vat_id is not None else p.vat_percent
        return {
            "product_id": p.id,
            "product_name": p.name,
            "product_price": self._money(p.price, n),
            "product_priceIncludesVat": True,
            "product_vat_id": p.vat_id,
            "product_vat": None if percent is None else float(percent),
            "product_externalReference": p.external_reference,
            "product_itemnumber": p.item_number,
            "product_active": True,
        }
