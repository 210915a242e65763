"""What the tap path counts for the metrics: taps, their decisions, and sales and money per product.

Plain integers in dicts, bumped by the device loop in its own thread after a tap is decided: no lock,
no journal work and no Prometheus import on the tap path. The endpoint reads them in the same loop at
scrape time. They count from this process's start; Prometheus's ``rate``/``increase`` take restarts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from terminal.effects import Charge, Effect, Show
from terminal.events import ChargeDone, ChargeQueued, Event
from terminal.model import ProductId
from terminal.screens import (
    ApprovedScreen,
    BalanceScreen,
    CreditScreen,
    DeclinedScreen,
    KioskLockedScreen,
    KioskScreen,
    NotRegisteredScreen,
    OutOfServiceScreen,
    PinScreen,
    Screen,
    TableAlreadyPaidScreen,
    TableChangedScreen,
    TableChooseScreen,
    TableConfirmingScreen,
    TableLoadingScreen,
    TablePaidScreen,
    TableProblemScreen,
)

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


def decision(effects: Sequence[Effect]) -> tuple[str, str]:
    """(outcome, reason) of a tap from the last screen it showed: a small fixed set of label values.

    outcome: approved, pending, declined, balance, operator, ignored (the terminal took no tap) or other;
    reason is never empty (a label left empty reads in PromQL as no label at all).
    """
    screens = [e.screen for e in effects if isinstance(e, Show)]
    if not screens:
        return ("ignored", "no_screen")
    return _outcome(screens[-1])


def _outcome(screen: Screen) -> tuple[str, str]:
    match screen:
        case ApprovedScreen(confirmed=True):
            return ("approved", "online")
        case ApprovedScreen(offline=True):
            return ("approved", "offline")
        case ApprovedScreen():
            return ("approved", "queued")
        case CreditScreen():
            return ("approved", "credit")
        case TablePaidScreen():
            return ("approved", "table")
        case TableConfirmingScreen():
            return ("pending", "table")
        case DeclinedScreen(reason=reason):
            return ("declined", str(reason))
        case NotRegisteredScreen():
            return ("declined", "unknown_card")
        case OutOfServiceScreen():
            return ("declined", "out_of_service")
        case TableAlreadyPaidScreen():
            return ("declined", "table_already_paid")
        case TableChangedScreen():
            return ("declined", "table_changed")
        case TableProblemScreen():
            return ("declined", "table_problem")
        case TableChooseScreen() | TableLoadingScreen():
            return ("declined", "no_table")
        case BalanceScreen():
            return ("balance", "empty_cart")
        case KioskScreen():
            return ("operator", "unlocked")
        case KioskLockedScreen():
            return ("operator", "locked")
        case PinScreen():
            return ("operator", "pin_asked")
    return ("other", type(screen).__name__)
