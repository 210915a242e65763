"""The seam between the controller's core and the ways to sell: a mode written outside plugs in."""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import pytest

from terminal.config import Mode, OfflineConfig, OperatorEntry
from terminal.controller import Controller, ControllerSettings
from terminal.controller.mode import BalanceCheck, CardAnswer, Redraw, Refusal, Sale, SellMode, Till
from terminal.controller.modes import MODES
from terminal.controller.operators import OperatorBook, card_entry
from terminal.effects import Beep, Charge, Dispense, Effect, LookupWallet, RecordDecline, Show, StartTimer
from terminal.events import (
    ButtonPressed,
    CardPresented,
    CardRemoved,
    ChargeDone,
    TimerFired,
    WalletBalance,
    WalletUnreachable,
)
from terminal.journal import OfflineView
from terminal.model import DeclineReason, Product
from terminal.screens import (
    ApprovedScreen,
    BalanceScreen,
    DeclinedScreen,
    IdleScreen,
    PriceLine,
    ProcessingScreen,
    Screen,
)

CATALOG = (
    Product("euro_1", "1 €", 100),
    Product("euro_5", "5 €", 500),
    Product("topup_10", "Aufladung 10 €", -1000),
)
CARD = "04A1B2C3D4E5F6"
OPERATOR = "04000000AAAAAA"
OPERATOR_KEY = bytes(range(32))  # the terminal's operator key (a test value)
OPERATORS = OperatorBook(OPERATOR_KEY, [OperatorEntry("olga", card_entry(OPERATOR_KEY, OPERATOR))])
OFFLINE = OfflineConfig(mode="accept", max_per_card_cents=1000, max_total_cents=5000, max_balance_age_s=3600)


class BillMode(SellMode):
    """A table bill as the coming table mode would pay it: a button opens the bill (as denomination
    products), the next tap pays it, and the bill is dropped when nobody pays within a minute."""

    def __init__(self, till: Till) -> None:
        super().__init__(till)
        self._bill_token = 0

    def idle_screen(self) -> Screen:
        if self.cart:
            return IdleScreen((PriceLine("Table 7", 600),), title="Tap to pay the bill")
        return IdleScreen((), title="No open bill")

    def card(self, uid: str) -> CardAnswer:
        if not self.cart:
            return BalanceCheck()
        return Sale(tuple(self.cart), goods=())

    def button(self, name: str) -> Refusal | Redraw | None:
        if name != "table7":
            return None
        self.cart[:] = ["euro_5", "euro_1"]
        self._bill_token = self.till.token()
        return Redraw((StartTimer(self._bill_token, 60.0),))

    def timer(self, token: int) -> bool:
        if token == self._bill_token and self.cart:
            self.cart.clear()
            return True
        return False


@pytest.fixture
def bill(monkeypatch: pytest.MonkeyPatch) -> Controller:
    monkeypatch.setitem(MODES, "bill", BillMode)
    settings = ControllerSettings(products=(), offline=OFFLINE, mode=cast(Mode, "bill"))
    return Controller(settings, CATALOG)


def screens(effects: list[Effect]) -> list[Screen]:
    return [e.screen for e in effects if isinstance(e, Show)]


def test_a_mode_from_outside_the_package_sells_through_the_shared_core(bill: Controller) -> None:
    assert screens(bill.start()) == [IdleScreen((), title="No open bill")]
    fx = bill.handle(ButtonPressed("table7"))
    assert screens(fx) == [IdleScreen((PriceLine("Table 7", 600),), title="Tap to pay the bill")]
    fx = bill.handle(CardPresented(CARD))
    assert fx == [Show(ProcessingScreen()), LookupWallet(CARD)]
    (charge,) = [e for e in bill.handle(WalletBalance(CARD, 2000)) if isinstance(e, Charge)]
    assert charge == Charge(CARD, ("euro_5", "euro_1"), -600, online=True, balance_before=2000)
    fx = bill.handle(ChargeDone("key", 1400))
    assert screens(fx) == [ApprovedScreen(600, 1400)] and Dispense(()) in fx
    assert bill.cart == [], "a paid bill is spent"
    # the core's re-tap guard holds for every mode: the same card back at once is not a second sale
    bill.handle(CardRemoved())
    bill.handle(ButtonPressed("table7"))
    assert bill.handle(CardPresented(CARD)) == []


def test_the_core_applies_its_balance_and_offline_rules_to_every_mode(bill: Controller) -> None:
    bill.handle(ButtonPressed("table7"))
    bill.handle(CardPresented(CARD))
    fx = bill.handle(WalletBalance(CARD, 500))
    assert screens(fx) == [DeclinedScreen(DeclineReason.INSUFFICIENT_BALANCE, 500)]
    assert [e.reason for e in fx if isinstance(e, RecordDecline)] == [DeclineReason.INSUFFICIENT_BALANCE]
    assert bill.cart == ["euro_5", "euro_1"], "a declined bill stays open for another card"
    bill.handle(CardRemoved())
    other = "04FFFFFFFFFFFF"
    bill.handle(CardPresented(other))
    # offline, with no balance seen for this card, the offline policy declines whatever the mode
    fx = bill.handle(WalletUnreachable(other, OfflineView(None, None, 0, 0, 0, None)))
    assert not [e for e in fx if isinstance(e, Charge)] and Beep("declined") in fx


def test_a_modes_own_timer_redraws_its_idle_screen(bill: Controller) -> None:
    (timer,) = [e for e in bill.handle(ButtonPressed("table7")) if isinstance(e, StartTimer)]
    fx = bill.handle(TimerFired(timer.token))
    assert screens(fx) == [IdleScreen((), title="No open bill")] and bill.cart == []
    bill.handle(CardPresented(CARD))
    assert screens(bill.handle(WalletBalance(CARD, 700))) == [BalanceScreen(700)]


def test_a_credit_names_the_operator_who_unlocked_when_the_guest_tapped() -> None:
    # The kiosk's unlock may run out while the lookup is under way; the credit was still handed over by
    # the operator who unlocked it, so the journal must name them.
    settings = replace(
        ControllerSettings(products=(), offline=OFFLINE),
        mode="topup",
        buttons={"ten": "topup_10"},
        operators=OPERATORS,
    )
    c = Controller(settings, CATALOG)
    c.handle(CardPresented(OPERATOR))
    c.handle(CardRemoved())
    (unlock,) = [e for e in c.handle(ButtonPressed("ten")) if isinstance(e, StartTimer)]
    c.handle(CardPresented(CARD))
    c.handle(TimerFired(unlock.token))
    (charge,) = [e for e in c.handle(WalletBalance(CARD, 0)) if isinstance(e, Charge)]
    assert charge.amount_cents == 1000 and charge.operator == "olga"
