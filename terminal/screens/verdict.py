"""What a tap decided, read from the last screen it showed: the (outcome, reason) labels that the metrics
count and that ``taptill tap``'s first word agrees with (tests/test_verdict.py holds the two together)."""

from __future__ import annotations

from collections.abc import Sequence

from terminal.effects import Effect, Show
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


def last_screen(effects: Sequence[Effect]) -> Screen | None:
    """The screen a tap (or press) ended on: the last Show among its effects; None when it showed none
    (the terminal took no tap)."""
    screens = [e.screen for e in effects if isinstance(e, Show)]
    return screens[-1] if screens else None


def decision(effects: Sequence[Effect]) -> tuple[str, str]:
    """(outcome, reason) of a tap from the last screen it showed: a small fixed set of label values.

    outcome: approved, pending, declined, balance, operator, ignored (the terminal took no tap) or other;
    reason is never empty (a label left empty reads in PromQL as no label at all).
    """
    screen = last_screen(effects)
    return ("ignored", "no_screen") if screen is None else verdict(screen)


def verdict(screen: Screen) -> tuple[str, str]:
    """(outcome, reason) of the screen a tap ended on; ``other`` for a screen no tap ends on."""
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
