"""Lists what a ready2order account offers to map against: payment methods, VAT rates, users, products.

Paths and fields from seed 004 and INTEGRATION-NOTES: ``GET /paymentMethods`` (``payment_id``,
``payment_name``), ``GET /vat-rates`` (``id``, ``value`` in percent), ``GET /users`` (``user_id``, names)
and ``GET /products`` (``product_id``, ``product_name``, ``product_itemnumber``,
``product_externalReference``, ``product_price`` in euros as a number or a string, ``product_vat_id``,
``product_vat``). Lists are bare JSON arrays read page by page (``page`` from 1, ``limit``): a short or
empty page ends the list, and so does a page with nothing new (a server that ignores ``page``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Generic, TypeVar

import httpx

from terminal.model import printable
from terminal.ready2order.exchange import Answer, Ready2OrderHttp, Refused, Unreachable, WrongToken
from terminal.service.secret import Secret

PAGE_SIZE = 100
MAX_PAGES = 100  # 10,000 products: more is not a venue's menu but a server that never ends its list
MAX_NAME_CHARS = 200


class BadItem(ValueError):
    """One list entry is not of the shape the document describes."""


@dataclass(frozen=True)
class PaymentMethod:
    id: int
    name: str


@dataclass(frozen=True)
class VatRate:
    id: int
    percent: Decimal  # 20 for 20 %
    name: str = ""


@dataclass(frozen=True)
class User:
    id: int
    name: str  # first and last name, else the user name


@dataclass(frozen=True)
class Product:
    """One ready2order product; ``price`` in euros exactly as the server gave it (None when absent)."""

    id: int
    name: str
    item_number: str | None = None
    external_reference: str | None = None
    price: Decimal | None = None
    vat_id: int | None = None
    vat_percent: Decimal | None = None


T = TypeVar("T")


@dataclass(frozen=True)
class Listed(Generic[T]):
    """The whole list, every page read."""

    items: tuple[T, ...]


ListOutcome = Listed[T] | WrongToken | Refused | Unreachable


class CatalogClient:
    """The account's lists under ``base_url`` with its account token; each request is over within
    ``timeout_s`` seconds (a list of many pages takes one such budget per page)."""

    def __init__(
        self,
        base_url: str,
        account_token: Secret,
        *,
        timeout_s: float = 10.0,
        page_size: int = PAGE_SIZE,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = Ready2OrderHttp(
            base_url, account_token, "account", timeout_s=timeout_s, transport=transport
        )
        self._page_size = page_size

    async def __aenter__(self) -> CatalogClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def payment_methods(self) -> ListOutcome[PaymentMethod]:
        return await self._list("/paymentMethods", parse_payment_method)

    async def vat_rates(self) -> ListOutcome[VatRate]:
        return await self._list("/vat-rates", parse_vat_rate)

    async def users(self) -> ListOutcome[User]:
        return await self._list("/users", parse_user)

    async def products(self) -> ListOutcome[Product]:
        return await self._list("/products", parse_product)

    async def _list(self, path: str, parse: Callable[[object], T]) -> ListOutcome[T]:
        items: dict[int, T] = {}
        for page in range(1, MAX_PAGES + 1):
            res = await self._http.call("GET", path, params={"page": page, "limit": self._page_size})
            if not isinstance(res, Answer):
                return res
            if not isinstance(res.data, list):
                return Unreachable(f"GET {path} answered no JSON array: not the ready2order API")
            try:
                parsed = [parse(raw) for raw in res.data]
            except BadItem as exc:
                return Unreachable(f"GET {path}: {exc}")
            new = {_id(item): item for item in parsed if _id(item) not in items}
            items.update(new)
            if len(res.data) < self._page_size or not new:
                return Listed(tuple(items.values()))
        return Unreachable(f"GET {path} still had more after {MAX_PAGES} pages of {self._page_size}")


def _id(item: object) -> int:
    value = getattr(item, "id", None)
    assert isinstance(value, int)
    return value


# --- parsing one entry (pure; raises BadItem) -----------------------------------------------------------


def _object(raw: object, what: str) -> dict[str, object]:
    if not isinstance(raw, dict):
        raise BadItem(f"a {what} is not a JSON object")
    return raw


def _int(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise BadItem(f"{what} is true/false, not a number")
    if isinstance(value, int) and 0 <= value < 2**63:
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 18:
        return int(value.strip())
    raise BadItem(f"{what} {printable(str(value), 20)!r} is not a whole number")


def _opt_int(value: object, what: str) -> int | None:
    return None if value is None or value == "" else _int(value, what)


def _text(value: object) -> str | None:
    """Server text for the console, the config's comments and matching: one printable line, or None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | Decimal):
        return str(value)  # item numbers come as numbers too (seed: "product_itemnumber": 1)
    if isinstance(value, str):
        text = printable(value, MAX_NAME_CHARS).strip()
        return text or None
    raise BadItem(f"a {type(value).__name__} where text belongs")


def _decimal(value: object, what: str) -> Decimal | None:
    """Euros or a percentage as exact decimals: numbers arrive as Decimal (never float), or as strings."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadItem(f"{what} is true/false, not a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise BadItem(f"{what} {printable(value, 20)!r} is not a number") from None
    else:
        raise BadItem(f"{what} is a {type(value).__name__}, not a number")
    if not amount.is_finite():
        raise BadItem(f"{what} {amount} is not a number")
    return amount


def parse_payment_method(raw: object) -> PaymentMethod:
    obj = _object(raw, "payment method")
    return PaymentMethod(_int(obj.get("payment_id"), "payment_id"), _text(obj.get("payment_name")) or "")


def parse_vat_rate(raw: object) -> VatRate:
    obj = _object(raw, "VAT rate")
    percent = _decimal(obj.get("value"), "VAT rate value")
    if percent is None:
        raise BadItem("a VAT rate has no value")
    name = _text(obj.get("name")) or _text(obj.get("description")) or ""
    return VatRate(_int(obj.get("id"), "VAT rate id"), percent, name)


def parse_user(raw: object) -> User:
    obj = _object(raw, "user")
    full = " ".join(n for n in (_text(obj.get("user_firstName")), _text(obj.get("user_lastName"))) if n)
    return User(_int(obj.get("user_id"), "user_id"), full or _text(obj.get("user_username")) or "")


def parse_product(raw: object) -> Product:
    obj = _object(raw, "product")
    return Product(
        id=_int(obj.get("product_id"), "product_id"),
        name=_text(obj.get("product_name")) or "",
        item_number=_text(obj.get("product_itemnumber")),
        external_reference=_text(obj.get("product_externalReference")),
        price=_decimal(obj.get("product_price"), "product_price"),
        vat_id=_opt_int(obj.get("product_vat_id"), "product_vat_id"),
        vat_percent=_decimal(obj.get("product_vat"), "product_vat"),
    )
