"""What the price board shows and what a tap charges, so that the price shown is the price charged.

``charge = "wallet"``: the wallet's own product prices are shown and charged; Partybroker only hears
about the sales (they move its market). ``charge = "ladder"``: each mapped product names several wallet
products at fixed prices; the one nearest the market price without exceeding it is shown and charged.
Below the cheapest step the cheapest is used; before the first market price is known, the first step.
"""

from __future__ import annotations

from dataclasses import dataclass

from terminal.model import Product, ProductId
from terminal.partybroker.config import PartybrokerConfig
from terminal.partybroker.price_board import PriceBoard, ladder_step
from terminal.screens import PriceLine


@dataclass(frozen=True)
class MarketView:
    lines: tuple[PriceLine, ...]
    charge: dict[str, ProductId]  # configured product → wallet product charged for it now
    stale: bool


def _find(catalog: tuple[Product, ...], pid: ProductId) -> Product | None:
    return next((p for p in catalog if str(p.id) == str(pid)), None)


def market_view(
    board: PriceBoard, cfg: PartybrokerConfig, catalog: tuple[Product, ...], products: tuple[ProductId, ...]
) -> MarketView:
    lines: list[PriceLine] = []
    charge: dict[str, ProductId] = {}
    any_stale = False
    for pid in dict.fromkeys(products):
        mapping = cfg.mapping_for(pid)
        market = board.price(pid) if mapping is not None else None
        stale = market is None or market.stale
        if cfg.charge == "ladder" and mapping is not None and mapping.ladder:
            steps = [(p.id, p.price_cents) for s in mapping.ladder if (p := _find(catalog, s)) is not None]
            if not steps:
                continue
            step = ladder_step(market.price_cents, steps) if market is not None else steps[0]
            if step is None:
                step = min(steps, key=lambda s: s[1])
            charge[str(pid)] = step[0]
            name = market.title if market is not None else (_find(catalog, pid) or _find(catalog, step[0]))
            title = name if isinstance(name, str) else (name.name if name is not None else str(pid))
            lines.append(PriceLine(title, step[1], stale=stale, product=str(pid)))
            any_stale |= stale
        else:
            product = _find(catalog, pid)
            if product is not None:
                lines.append(PriceLine(product.name, product.price_cents, product=str(pid)))
    return MarketView(tuple(lines), charge, any_stale)
