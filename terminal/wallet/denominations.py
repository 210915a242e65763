"""Paying an amount through a product-based wallet: the fewest denomination products that sum to it exactly.

The wallet debits products, not amounts (issue 14), so an amount due is decomposed into denomination
products (``[table] denominations``: cents → wallet product id). Greedy is not always fewest ({1, 3, 4}
pays 6 as 4+1+1, not 3+3); this is exact change-making by dynamic programming, kept small by a bound:
in a fewest decomposition each smaller denomination d is used fewer than lcm(d, largest)/d times (that
many would be worth fewer products of the largest), so all but the remainder is the largest denomination.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from terminal.model import Product, ProductId

MAX_PRODUCTS = 200  # one wallet transaction: beyond this the denominations are too small for the amount


def decompose(amount_cents: int, denominations: Mapping[int, ProductId]) -> tuple[ProductId, ...]:
    """The fewest products of ``denominations`` (value in cents → product) summing to ``amount_cents``,
    largest first. Raises ValueError when the amount cannot be paid exactly with them, when it would take
    more than MAX_PRODUCTS products, or for a denomination that is not a positive number of cents."""
    if amount_cents < 0:
        raise ValueError(f"cannot pay a negative amount ({amount_cents} cents)")
    values = sorted(denominations, reverse=True)
    if not values or values[-1] <= 0:
        raise ValueError("the denominations must be positive amounts in cents, at least one")
    largest = values[0]
    if amount_cents > MAX_PRODUCTS * largest:
        raise ValueError(f"{amount_cents} cents would take more than {MAX_PRODUCTS} products")
    slack = sum(math.lcm(d, largest) - d for d in values[1:])
    whole = max(0, (amount_cents - slack) // largest)  # the largest denomination's share, surely
    counts = _fewest(amount_cents - whole * largest, values)
    if counts is None:
        raise ValueError(f"{amount_cents} cents cannot be paid exactly with {sorted(values)} cents")
    counts[largest] = counts.get(largest, 0) + whole
    if sum(counts.values()) > MAX_PRODUCTS:
        raise ValueError(f"{amount_cents} cents would take more than {MAX_PRODUCTS} products")
    return tuple(denominations[v] for v in values for _ in range(counts.get(v, 0)))


def _fewest(amount: int, values: list[int]) -> dict[int, int] | None:
    """Change-making by dynamic programming over 0..amount: value → count, or None if impossible."""
    unreachable = amount + 1
    fewest = [0] + [unreachable] * amount
    last = [0] * (amount + 1)
    for total in range(1, amount + 1):
        for value in values:
            if value <= total and fewest[total - value] + 1 < fewest[total]:
                fewest[total] = fewest[total - value] + 1
                last[total] = value
    if fewest[amount] >= unreachable:
        return None
    counts: dict[int, int] = {}
    while amount:
        counts[last[amount]] = counts.get(last[amount], 0) + 1
        amount -= last[amount]
    return counts


def check_prices(denominations: Mapping[int, ProductId], catalog: Iterable[Product]) -> list[str]:
    """One printable line per denomination whose product the wallet does not list, or lists at another
    price than the denomination (cents); empty when every one matches. ``catalog``: the wallet's
    products (e.g. ``Catalog.info.products``)."""
    prices = {str(p.id): p for p in catalog}
    problems = []
    for value, product_id in sorted(denominations.items()):
        product = prices.get(str(product_id))
        if product is None:
            problems.append(f"denomination {value} cents: the wallet lists no product {product_id!r}")
        elif product.price_cents != value:
            problems.append(
                f"denomination {value} cents: wallet product {product_id!r} ({product.name}) costs "
                f"{product.price_cents} cents; set its price to {value} or map {value} to another product"
            )
    return problems
