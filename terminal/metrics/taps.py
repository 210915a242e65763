"""What the tap path counts for the metrics: taps, their decisions, and sales and money per product.

Plain integers in dicts, bumped by the device loop in its own thread after a tap is decided: no lock,
no journal work and no Prometheus import on the tap path. The endpoint reads them in the same loop at
scrape time. They count from this process's start; Prometheus's ``rate``/``increase`` take restarts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from terminal.effects import Charge, Effect
from terminal.events import ChargeDone, ChargeQueued, Event
from terminal.model import ProductId
from terminal.screens.verdict import decision

__all__ = ["PriceOf", "TapCounts", "decision", "share"]

# A product's price in cents as the catalog lists it now (None: not listed), to share a cart's money out.
PriceOf = Callable[[ProductId], int | None]


class TapCounts:
    """Counters since the terminal started: ``taps``; ``decisions[(outcome, reason)]``;
    ``sales[(product, kind)]`` and ``cents[(product, kind)]`` with kind ``debit`` or ``credit``."""

    def __init__(self) -> None:
        self.taps = 0
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.sales: Counter[tuple[str, str]] = Counter()
        self.cents: Counter[tuple[str, str]] = Counter()

    def tapped(self, effects: Sequence[Effect]) -> None:
        """One tap handled, with every effect its events produced (in order)."""
        self.taps += 1
        self.decisions[decision(effects)] += 1

    def charged(self, charge: Charge, result: Event, price_of: PriceOf) -> None:
        """A Charge effect answered by ``result``: a sale when it was booked or approved to be (queued).
        Its money (cents, unsigned) goes to its products so that they add up to the sale's amount."""
        if not isinstance(result, ChargeDone | ChargeQueued) or not charge.products:
            return
        kind = "debit" if charge.amount_cents < 0 else "credit"
        for product, cents in zip(charge.products, share(charge, price_of), strict=True):
            self.sales[(str(product), kind)] += 1
            self.cents[(str(product), kind)] += cents


def share(charge: Charge, price_of: PriceOf) -> list[int]:
    """The sale's amount (cents, unsigned) per product line: by the catalog's prices when they add up to
    it, else in equal parts (the first lines take the remainder); always summing to the amount exactly."""
    total = abs(charge.amount_cents)
    prices = [price_of(p) for p in charge.products]
    if all(p is not None for p in prices) and sum(abs(p or 0) for p in prices) == total:
        return [abs(p or 0) for p in prices]
    part, rest = divmod(total, len(charge.products))
    return [part + (1 if i < rest else 0) for i in range(len(charge.products))]
