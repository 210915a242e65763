"""The seam between the controller's core and the ways to sell: a mode written outside plugs in."""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar, cast

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
    ChargeFailed,
    ChargeRejected,
    Event,
    StockChanged,
    TimerFired,
    WalletBalance,
    WalletRefused,
    WalletUnreachable,
)
from terminal.journal import OfflineView
from terminal.model import DeclineReason, Product
from terminal.screens import (
    ApprovedScreen,
    BalanceScreen,
    CartLine,
    CartScreen,
    CreditScreen,
    DeclinedScreen,
    IdleScreen,
    KioskScreen,
    NotRegisteredScreen,
    OutOfServiceScreen,
    PriceLine,
    ProcessingScreen,
    Screen,
)

T = TypeVar("T")

CATALOG = (
    Product("euro_1", "1 €", 100),
    Product("euro_5", "5 €", 500),
    Product("topup_10", "Aufladung 10 €", -1000),
    Product("espresso", "Espresso", 250),
    Product("mate", "Club-Mate", 120),
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

    def declined(self) -> None:
        """The table's bill is the table's, not the tapping guest's: it stays open for another card."""

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


def only(effects: list[Effect], kind: type[T]) -> list[T]:
    return [e for e in effects if isinstance(e, kind)]


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


def unlocked_kiosk() -> Controller:
    """A top-up kiosk with one ten-euro button, just unlocked by Olga's operator card (taken away)."""
    settings = replace(
        ControllerSettings(products=(), offline=OFFLINE),
        mode="topup",
        buttons={"ten": "topup_10"},
        operators=OPERATORS,
    )
    c = Controller(settings, CATALOG)
    c.handle(CardPresented(OPERATOR))
    c.handle(CardRemoved())
    return c


def test_a_credit_names_the_operator_who_unlocked_when_the_guest_tapped() -> None:
    # The kiosk's unlock may run out while the lookup is under way; the credit was still handed over by
    # the operator who unlocked it, so the journal must name them.
    c = unlocked_kiosk()
    (unlock,) = [e for e in c.handle(ButtonPressed("ten")) if isinstance(e, StartTimer)]
    c.handle(CardPresented(CARD))
    c.handle(TimerFired(unlock.token))
    (charge,) = [e for e in c.handle(WalletBalance(CARD, 0)) if isinstance(e, Charge)]
    assert charge.amount_cents == 1000 and charge.operator == "olga"


# --- a declined tap and what the next guest pays ----------------------------------------------------

SELECT = replace(
    ControllerSettings(products=(), offline=OFFLINE),
    mode="select",
    buttons={"espresso": "espresso", "mate": "mate"},
    cancel_button="cancel",
)
GUEST_A = "04AAAAAAAAAAAA"  # chooses a Club-Mate and taps a card with too little on it
GUEST_B = "04BBBBBBBBBBBB"  # the next guest, 20 € on the card

# Every way guest A's tap can end with nothing charged: what happens before the tap (after the press),
# and the events that answer it.
DECLINES: dict[str, tuple[list[Event], list[Event]]] = {
    "insufficient balance": ([], [WalletBalance(GUEST_A, 100)]),
    "card's sales pending eat the balance": ([], [WalletBalance(GUEST_A, 500, 450)]),
    "unknown card": ([], [WalletRefused(GUEST_A, DeclineReason.UNKNOWN_CARD)]),
    "blocked card": ([], [WalletRefused(GUEST_A, DeclineReason.DENIED_CARD)]),
    "token refused": ([], [WalletRefused(GUEST_A, DeclineReason.OUT_OF_SERVICE)]),
    "offline, no balance seen": ([], [WalletUnreachable(GUEST_A, OfflineView(None, None, 0, 0, 0, None))]),
    "offline, over the card's limit": (
        [],
        [WalletUnreachable(GUEST_A, OfflineView(5000, 10, 900, 900, 1, None))],
    ),
    "offline, too little": ([], [WalletUnreachable(GUEST_A, OfflineView(100, 10.0, 0, 0, 0, None))]),
    "charge refused by the server": (
        [],
        [WalletBalance(GUEST_A, 2000), ChargeRejected("k", DeclineReason.PERMISSION)],
    ),
    "journal not writable": ([], [WalletBalance(GUEST_A, 2000), ChargeFailed("journal not writable")]),
    "sold out at the tap": ([StockChanged({"mate": 0})], []),
}


def declined_guest_a(c: Controller, before: list[Event], answers: list[Event]) -> list[Effect]:
    """Guest A presses "mate" and taps; the tap ends with nothing charged. Every effect of the tap."""
    c.start()
    c.handle(ButtonPressed("mate"))
    for event in before:
        c.handle(event)
    effects = c.handle(CardPresented(GUEST_A))
    for event in answers:
        effects += c.handle(event)
    c.handle(CardRemoved())
    assert not only(effects, Dispense) and Beep("approved") not in effects
    return effects


@pytest.mark.parametrize(("before", "answers"), DECLINES.values(), ids=DECLINES.keys())
def test_a_declined_tap_empties_the_cart_so_the_next_guest_pays_only_their_own_choice(
    before: list[Event], answers: list[Event]
) -> None:
    # The field: guest A's Club-Mate stayed in the cart after A's card was declined; guest B chose an
    # espresso and was charged 3,70 € instead of 2,50 €.
    c = Controller(SELECT, CATALOG)
    effects = declined_guest_a(c, before, answers)
    result = screens(effects)[-1]
    assert isinstance(result, DeclinedScreen | NotRegisteredScreen | OutOfServiceScreen), result
    assert c.cart == [], "a declined guest chooses again"
    (hold,) = [e for e in effects if isinstance(e, StartTimer) and e.delay_s == SELECT.screen_hold_s]
    (idle,) = screens(c.handle(TimerFired(hold.token)))
    assert isinstance(idle, IdleScreen) and idle.title == "Choose, then tap", "no leftover cart"
    # guest B, nothing chosen: the balance, nothing charged
    assert c.handle(CardPresented(GUEST_B)) == [Show(ProcessingScreen()), LookupWallet(GUEST_B)]
    fx = c.handle(WalletBalance(GUEST_B, 2000))
    assert screens(fx) == [BalanceScreen(2000)] and not only(fx, Charge) and not only(fx, RecordDecline)
    c.handle(CardRemoved())
    # guest B chooses an espresso: the cart and the charge are the espresso alone
    assert screens(c.handle(ButtonPressed("espresso"))) == [
        CartScreen((CartLine("Espresso", 1, 250),), cancel_button="cancel")
    ]
    c.handle(CardPresented(GUEST_B))
    (charge,) = only(c.handle(WalletBalance(GUEST_B, 2000)), Charge)
    assert (charge.products, charge.amount_cents) == (("espresso",), -250)


def test_a_press_while_the_decline_shows_starts_a_new_cart() -> None:
    c = Controller(SELECT, CATALOG)
    declined_guest_a(c, [], [WalletBalance(GUEST_A, 100)])
    fx = c.handle(ButtonPressed("espresso"))  # guest B, before the decline screen is over
    assert screens(fx) == [CartScreen((CartLine("Espresso", 1, 250),), cancel_button="cancel")]
    assert c.cart == ["espresso"]


def test_a_paid_tap_still_empties_the_cart() -> None:
    c = Controller(SELECT, CATALOG)
    c.handle(ButtonPressed("mate"))
    c.handle(CardPresented(GUEST_B))
    c.handle(WalletBalance(GUEST_B, 2000))
    fx = c.handle(ChargeDone("k", 1880))
    assert screens(fx) == [ApprovedScreen(120, 1880)] and only(fx, Dispense) == [Dispense(("mate",))]
    assert c.cart == []


def test_a_declined_top_up_keeps_the_operators_amount_while_the_kiosk_is_unlocked() -> None:
    # The operator chose the amount and holds the guest's cash: a card that is not registered (or over
    # a cap) is tried again, or another card is, without keying the amount in again.
    c = unlocked_kiosk()
    c.handle(ButtonPressed("ten"))
    c.handle(CardPresented(CARD))
    fx = c.handle(WalletRefused(CARD, DeclineReason.UNKNOWN_CARD))
    assert screens(fx) == [NotRegisteredScreen(CARD, None)] and c.cart == ["topup_10"]
    c.handle(CardRemoved())
    (hold,) = only(fx, StartTimer)
    assert screens(c.handle(TimerFired(hold.token))) == [KioskScreen(1000, (("ten", 1000),))]
    c.handle(CardPresented(GUEST_B))
    (charge,) = only(c.handle(WalletBalance(GUEST_B, 0)), Charge)
    assert (charge.amount_cents, charge.operator) == (1000, "olga")
    assert screens(c.handle(ChargeDone("k", 1000))) == [CreditScreen(1000, 1000)] and c.cart == []
