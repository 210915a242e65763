"""The pure controller: every mode's whole flow, events in and effects out, no I/O."""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

import pytest

from terminal.config import OfflineConfig, OperatorEntry
from terminal.controller import Controller, ControllerSettings, Phase
from terminal.controller.operators import OperatorBook, card_entry
from terminal.effects import (
    Beep,
    Charge,
    Dispense,
    Effect,
    LookupWallet,
    Notice,
    RecordDecline,
    Show,
    StartTimer,
)
from terminal.emulator.wallet import WalletEmulator
from terminal.events import (
    ButtonPressed,
    CardPresented,
    CardRemoved,
    CatalogChanged,
    ChargeDone,
    ChargeFailed,
    ChargeQueued,
    ChargeRejected,
    PricesChanged,
    ServerChanged,
    StorageChanged,
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
    KioskLockedScreen,
    KioskScreen,
    NotRegisteredScreen,
    OfflineScreen,
    OutOfServiceScreen,
    PriceLine,
    ProcessingScreen,
    Screen,
)

T = TypeVar("T")

CATALOG = (
    Product("espresso", "Espresso", 250),
    Product("cappuccino", "Cappuccino", 300),
    Product("topup_10", "Aufladung 10 €", -1000),
    Product("topup_20", "Aufladung 20 €", -2000),
)
CARD = "04A1B2C3D4E5F6"
OPERATOR = "04000000AAAAAA"
OPERATOR_KEY = bytes(range(32))  # the terminal's operator key (a test value)
OPERATORS = OperatorBook(OPERATOR_KEY, [OperatorEntry("olga", card_entry(OPERATOR_KEY, OPERATOR))])
OFFLINE = OfflineConfig(mode="accept", max_per_card_cents=1000, max_total_cents=5000, max_balance_age_s=3600)
# The re-arm time differs from every other delay here, so a test can tell its timer apart.
TAP = ControllerSettings(
    products=("espresso", "espresso"), offline=OFFLINE, pairing_url="https://pair.example", rearm_absent_s=0.5
)
SELECT = replace(
    TAP, products=(), mode="select", buttons={"b1": "espresso", "b2": "cappuccino"}, cancel_button="cancel"
)
TOPUP = replace(
    TAP,
    products=(),
    mode="topup",
    buttons={"ten": "topup_10", "twenty": "topup_20"},
    cancel_button="clear",
    operators=OPERATORS,
)

KIOSK_BUTTONS = (("ten", 1000), ("twenty", 2000))  # what each TOPUP button adds, in cents


def screens(effects: list[Effect]) -> list[Screen]:
    return [e.screen for e in effects if isinstance(e, Show)]


def only(effects: list[Effect], kind: type[T]) -> list[T]:
    return [e for e in effects if isinstance(e, kind)]


def view(balance: int | None = 2000, age: float | None = 10.0, card: int = 0, total: int = 0) -> OfflineView:
    return OfflineView(balance, age, card, total, 0, None)


# --- tap mode -----------------------------------------------------------------------------------


def test_approved_tap_charges_every_product_then_pulses_once_per_product() -> None:
    c = Controller(TAP, CATALOG)
    fx = c.handle(CardPresented(CARD))
    assert screens(fx) == [ProcessingScreen()] and LookupWallet(CARD) in fx
    fx = c.handle(WalletBalance(CARD, 2000))
    (charge,) = only(fx, Charge)
    assert charge == Charge(
        CARD, ("espresso", "espresso"), -500, online=True, balance_before=2000, goods=("espresso", "espresso")
    )
    assert not only(fx, Dispense), "nothing is released before the sale is journaled"
    fx = c.handle(ChargeDone("key", 1500))
    assert screens(fx) == [ApprovedScreen(500, 1500)]
    assert Dispense(("espresso", "espresso")) in fx and Beep("approved") in fx
    result_timer, guard_timer = only(fx, StartTimer)
    assert (result_timer.delay_s, guard_timer.delay_s) == (TAP.screen_hold_s, TAP.retap_guard_s)
    fx = c.handle(TimerFired(result_timer.token))
    assert isinstance(screens(fx)[0], IdleScreen) and c.phase is Phase.IDLE


def test_insufficient_balance_is_declined_and_journaled() -> None:
    c = Controller(TAP, CATALOG)
    c.handle(CardPresented(CARD))
    fx = c.handle(WalletBalance(CARD, 400))
    assert screens(fx) == [DeclinedScreen(DeclineReason.INSUFFICIENT_BALANCE, 400)]
    assert RecordDecline(CARD, ("espresso", "espresso"), -500, DeclineReason.INSUFFICIENT_BALANCE) in fx
    assert not only(fx, Charge) and not only(fx, Dispense)


def test_pending_sales_of_the_card_count_against_its_balance() -> None:
    c = Controller(TAP, CATALOG)
    c.handle(CardPresented(CARD))
    fx = c.handle(WalletBalance(CARD, 800, pending_cents=400))
    assert screens(fx) == [DeclinedScreen(DeclineReason.INSUFFICIENT_BALANCE, 400)]


MATE = ControllerSettings(products=("mate",), offline=OFFLINE)
MATE_CATALOG = (*CATALOG, Product("mate", "Club-Mate", 120))


def test_a_wallet_holding_exactly_the_price_is_served_though_the_real_server_reads_it_a_cent_low() -> None:
    reported = WalletEmulator("real", wallets={CARD: 120}).reported_balance(CARD)  # not started: no I/O
    assert reported == 119
    served = Controller(MATE, MATE_CATALOG)
    served.handle(CardPresented(CARD))
    (charge,) = only(served.handle(WalletBalance(CARD, reported)), Charge)
    assert charge == Charge(CARD, ("mate",), -120, online=True, balance_before=119, goods=("mate",))
    short = Controller(MATE, MATE_CATALOG)
    short.handle(CardPresented(CARD))
    fx = short.handle(WalletBalance(CARD, 118))  # two cents short: the wallet holds at most 1.19
    assert screens(fx) == [DeclinedScreen(DeclineReason.INSUFFICIENT_BALANCE, 118)]
    assert not only(fx, Charge) and only(fx, RecordDecline)
    pending = Controller(MATE, MATE_CATALOG)
    pending.handle(CardPresented(CARD))
    assert only(pending.handle(WalletBalance(CARD, 369, pending_cents=250)), Charge)  # the cent once


def test_offline_a_last_balance_a_cent_below_the_price_is_served_two_cents_short_is_not() -> None:
    decided = {}
    for last, unconfirmed in ((119, 0), (369, 250), (118, 0), (368, 250)):
        c = Controller(MATE, MATE_CATALOG)
        c.handle(CardPresented(CARD))
        fx = c.handle(WalletUnreachable(CARD, view(balance=last, card=unconfirmed)))
        decided[last] = bool(only(fx, Charge))
        if not decided[last]:
            shown = screens(fx)[0]
            assert isinstance(shown, DeclinedScreen) and shown.reason is DeclineReason.INSUFFICIENT_BALANCE
    assert decided == {119: True, 369: True, 118: False, 368: False}


def test_unknown_card_offers_the_pairing_url() -> None:
    c = Controller(TAP, CATALOG)
    c.handle(CardPresented(CARD))
    fx = c.handle(WalletRefused(CARD, DeclineReason.UNKNOWN_CARD))
    assert screens(fx) == [NotRegisteredScreen(CARD, "https://pair.example")]
    assert only(fx, RecordDecline)


def test_a_held_card_is_one_tap_and_taps_do_not_overlap() -> None:
    c = Controller(TAP, CATALOG)
    assert c.handle(CardPresented(CARD))
    assert c.handle(CardPresented(CARD)) == []
    assert c.handle(CardPresented("04BBBBBBBBBBBB")) == []  # still deciding
    c.handle(CardRemoved())
    c.handle(WalletBalance(CARD, 2000))
    c.handle(ChargeDone("k", 1500))
    assert LookupWallet("04BBBBBBBBBBBB") in c.handle(CardPresented("04BBBBBBBBBBBB"))


# --- one physical tap, one sale (issue 10) ------------------------------------------------------

OTHER = "04BBBBBBBBBBBB"
GUARDED = replace(TAP, screen_hold_s=1.0, retap_guard_s=3.0)  # distinct delays tell the timers apart


def sell(c: Controller, outcome: ChargeDone | ChargeQueued | None = None, uid: str = CARD) -> list[Effect]:
    """One tap of ``uid`` that is charged; returns the effects of the charge's outcome."""
    assert LookupWallet(uid) in c.handle(CardPresented(uid))
    assert only(c.handle(WalletBalance(uid, 2000)), Charge)
    return c.handle(outcome or ChargeDone("k", 1500))


def timer(effects: list[Effect], delay_s: float) -> int:
    (token,) = [t.token for t in only(effects, StartTimer) if t.delay_s == delay_s]
    return token


def away(c: Controller) -> None:
    """The card on the reader is taken away and stays away the re-arm time."""
    c.handle(TimerFired(timer(c.handle(CardRemoved()), c.settings.rearm_absent_s)))


def test_a_card_flickering_while_its_result_shows_is_not_charged_again() -> None:
    settings = replace(TAP, screen_hold_s=5.0, retap_guard_s=1.0)  # the result outlasts the window
    c = Controller(settings, CATALOG)
    fx = sell(c)
    c.handle(TimerFired(timer(fx, settings.retap_guard_s)))  # the time window is over...
    away(c)
    assert c.handle(CardPresented(CARD)) == []  # ...but "Approved" still shows
    assert c.phase is Phase.RESULT
    c.handle(TimerFired(timer(fx, settings.screen_hold_s)))
    away(c)
    assert LookupWallet(CARD) in c.handle(CardPresented(CARD))


def test_a_guard_of_zero_turns_the_guard_off() -> None:
    c = Controller(replace(TAP, retap_guard_s=0.0), CATALOG)
    fx = sell(c)
    assert [t.delay_s for t in only(fx, StartTimer)] == [TAP.screen_hold_s]
    c.handle(CardRemoved())
    assert LookupWallet(CARD) in c.handle(CardPresented(CARD))


def test_the_same_card_within_the_guard_is_ignored_and_charged_after_it() -> None:
    for outcome in (ChargeDone("k", 1500), ChargeQueued("k", 1500)):
        c = Controller(GUARDED, CATALOG)
        fx = sell(c, outcome)
        guard = timer(fx, GUARDED.retap_guard_s)
        c.handle(TimerFired(timer(fx, GUARDED.screen_hold_s)))
        assert c.phase is Phase.IDLE
        c.handle(CardRemoved())
        assert c.handle(CardPresented(CARD)) == [], outcome  # the result is gone, the guard is not
        assert c.handle(TimerFired(guard)) == []  # the card is still lying there: no tap by itself
        away(c)
        assert LookupWallet(CARD) in c.handle(CardPresented(CARD)), "a real second purchase"
        assert only(c.handle(WalletBalance(CARD, 1500)), Charge)


def test_another_card_is_served_while_the_first_is_guarded() -> None:
    c = Controller(GUARDED, CATALOG)
    fx = sell(c)
    c.handle(CardRemoved())
    sell(c, uid=OTHER)  # during the first card's result screen
    c.handle(TimerFired(timer(fx, GUARDED.screen_hold_s)))  # stale: the other card's result shows
    c.handle(CardRemoved())
    assert c.handle(CardPresented(CARD)) == []  # still within the first card's guard


def test_declines_rejections_and_balance_checks_start_no_guard() -> None:
    c = Controller(GUARDED, CATALOG)
    c.handle(CardPresented(CARD))
    c.handle(WalletBalance(CARD, 100))  # declined: insufficient balance
    c.handle(CardRemoved())
    assert LookupWallet(CARD) in c.handle(CardPresented(CARD))
    c.handle(WalletBalance(CARD, 2000))
    fx = c.handle(ChargeRejected("k", DeclineReason.PERMISSION))
    assert [t.delay_s for t in only(fx, StartTimer)] == [GUARDED.screen_hold_s], "refused: no guard"
    c.handle(CardRemoved())
    assert LookupWallet(CARD) in c.handle(CardPresented(CARD))

    c = Controller(replace(SELECT, screen_hold_s=1.0, retap_guard_s=3.0), CATALOG)
    c.handle(CardPresented(CARD))
    c.handle(WalletBalance(CARD, 1234))  # the balance screen
    c.handle(CardRemoved())
    assert LookupWallet(CARD) in c.handle(CardPresented(CARD))


def test_a_card_already_on_a_restarting_reader_is_not_a_tap_until_taken_away() -> None:
    c = Controller(GUARDED, CATALOG)
    c.start()
    assert c.handle(CardPresented(CARD, already_present=True)) == []  # lying there at start
    assert c.handle(CardPresented(CARD)) == []  # the same card, still held
    c.handle(CardRemoved())
    fx = sell(c)
    assert Dispense(("espresso", "espresso")) in fx
    # Long after: the reader restarts (pcscd restart) and reports the resting card removed, then there.
    c.handle(TimerFired(timer(fx, GUARDED.screen_hold_s)))
    c.handle(TimerFired(timer(fx, GUARDED.retap_guard_s)))
    away(c)
    assert c.handle(CardPresented(CARD, already_present=True)) == []
    assert c.phase is Phase.IDLE
    c.handle(CardRemoved())
    assert LookupWallet(CARD) in c.handle(CardPresented(CARD))


def test_offline_accepts_within_the_last_balance_and_limits() -> None:
    c = Controller(TAP, CATALOG)
    c.handle(CardPresented(CARD))
    fx = c.handle(WalletUnreachable(CARD, view()))
    (charge,) = only(fx, Charge)
    assert charge.online is False and charge.reason.startswith("offline: accepted")
    fx = c.handle(ChargeQueued("k", None))
    assert screens(fx) == [ApprovedScreen(500, None, confirmed=False, offline=True)]
    assert Dispense(("espresso", "espresso")) in fx
    assert c.unconfirmed == 1


def test_offline_declines_with_reasons() -> None:
    cases = [
        (view(balance=None, age=None), DeclineReason.OFFLINE),
        (view(age=7200), DeclineReason.OFFLINE),
        (view(card=600), DeclineReason.OFFLINE_LIMIT),
        (view(total=4600), DeclineReason.OFFLINE_LIMIT),
        (view(balance=400), DeclineReason.INSUFFICIENT_BALANCE),
    ]
    for v, reason in cases:
        c = Controller(TAP, CATALOG)
        c.handle(CardPresented(CARD))
        fx = c.handle(WalletUnreachable(CARD, v))
        assert not only(fx, Charge), (v, reason)
        (record,) = only(fx, RecordDecline)
        assert record.offline and str(record.reason).startswith("offline")
        shown = screens(fx)[0]
        assert isinstance(shown, DeclinedScreen) and shown.reason is reason


def _offline_tap(v: OfflineView, settings: ControllerSettings = TAP) -> list[Effect]:
    c = Controller(settings, CATALOG)
    c.handle(CardPresented(CARD))
    return c.handle(WalletUnreachable(CARD, v))


@pytest.mark.parametrize(
    ("v", "reason", "journaled"),
    [
        (view(age=3601), DeclineReason.OFFLINE, "offline: balance 3601s old"),
        (view(card=501), DeclineReason.OFFLINE_LIMIT, "offline: per-card limit"),
        (view(total=4501), DeclineReason.OFFLINE_LIMIT, "offline: terminal limit"),
        (view(balance=None, age=None), DeclineReason.OFFLINE, "offline: card never seen online"),
        (view(balance=900, card=500), DeclineReason.INSUFFICIENT_BALANCE, "offline: balance 400 < 500"),
        (
            OfflineView(2000, 10.0, 0, 0, 0, "revoked"),
            DeclineReason.DENIED_CARD,
            "offline: card denied (revoked)",
        ),
    ],
)
def test_an_offline_decline_one_step_past_a_limit_journals_why(
    v: OfflineView, reason: DeclineReason, journaled: str
) -> None:
    """The journal's reason is what the operator reads in `taptill status` afterwards; the screen's
    reason is what the guest reads. A card the server denied is never sold offline, however rich."""
    fx = _offline_tap(v)
    assert not only(fx, Charge) and not only(fx, Dispense)
    assert only(fx, RecordDecline) == [RecordDecline(CARD, ("espresso", "espresso"), -500, journaled, True)]
    (shown,) = screens(fx)
    assert isinstance(shown, DeclinedScreen) and shown.reason is reason


@pytest.mark.parametrize("v", [view(age=3600), view(card=500), view(total=4500)])
def test_offline_accepts_a_sale_that_reaches_a_limit_exactly(v: OfflineView) -> None:
    """The limits are the most a card or the terminal may owe and the oldest balance trusted: a sale
    reaching one exactly is sold."""
    (charge,) = only(_offline_tap(v), Charge)
    assert charge.online is False
    assert charge.reason == f"offline: accepted on balance 2000 seen {v.balance_age_s:.0f}s ago"


def test_decline_mode_never_sells_offline() -> None:
    c = Controller(replace(TAP, offline=replace(OFFLINE, mode="decline")), CATALOG)
    c.handle(CardPresented(CARD))
    fx = c.handle(WalletUnreachable(CARD, view()))
    assert not only(fx, Charge) and screens(fx) == [DeclinedScreen(DeclineReason.OFFLINE)]
    assert only(fx, RecordDecline)[0].reason == "offline: policy declines"


def test_rejected_charge_shows_the_reason_and_dispenses_nothing() -> None:
    c = Controller(TAP, CATALOG)
    c.handle(CardPresented(CARD))
    c.handle(WalletBalance(CARD, 2000))
    fx = c.handle(ChargeRejected("k", DeclineReason.PERMISSION))
    assert screens(fx) == [DeclinedScreen(DeclineReason.PERMISSION)] and not only(fx, Dispense)


def test_a_journal_that_cannot_be_written_stops_sales_until_it_recovers() -> None:
    c = Controller(TAP, CATALOG)
    c.handle(CardPresented(CARD))
    c.handle(WalletBalance(CARD, 2000))
    fx = c.handle(ChargeFailed("cannot write the journal"))
    assert screens(fx) == [OutOfServiceScreen("cannot write the journal")] and not only(fx, Dispense)
    c.handle(StorageChanged(False, "cannot write the journal"))  # the device loop's storage probe
    c.handle(CardRemoved())
    fx = c.handle(CardPresented(CARD))
    assert not only(fx, LookupWallet)
    c.handle(StorageChanged(True))
    c.handle(CardRemoved())
    assert LookupWallet(CARD) in c.handle(CardPresented(CARD))


def test_offline_idle_screen_counts_unconfirmed_sales() -> None:
    c = Controller(TAP, CATALOG)
    fx = c.handle(ServerChanged(False, 3))
    shown = screens(fx)[0]
    assert isinstance(shown, OfflineScreen) and shown.unconfirmed == 3


@pytest.mark.parametrize(("settings", "action"), [(TAP, "Tap your card"), (SELECT, "Choose, then tap")])
def test_the_idle_screen_says_what_to_do_in_each_mode(settings: ControllerSettings, action: str) -> None:
    c = Controller(settings, CATALOG)
    (idle,) = screens(c.start())
    assert isinstance(idle, IdleScreen) and idle.title == action and idle.prices
    assert idle.text().title == action
    (offline,) = screens(c.handle(ServerChanged(False, 0)))
    assert isinstance(offline, OfflineScreen) and offline.text().lines == (action,)


def test_the_kiosk_shows_what_each_button_adds_and_not_a_debit_button() -> None:
    settings = replace(TOPUP, buttons={"ten": "topup_10", "oops": "espresso", "twenty": "topup_20"})
    c = Controller(settings, CATALOG)
    (kiosk,) = screens(c.handle(CardPresented(OPERATOR)))
    assert isinstance(kiosk, KioskScreen) and kiosk.buttons == KIOSK_BUTTONS
    assert kiosk.text().lines == ("Choose amount", "ten +10,00 €", "twenty +20,00 €")


def test_ladder_charges_the_product_the_board_shows() -> None:
    settings = replace(TAP, products=("beer",))
    catalog = (Product("beer_s", "Bier", 250), Product("beer_m", "Bier", 290))
    c = Controller(settings, catalog)
    c.handle(PricesChanged((PriceLine("Bier", 290),), charge={"beer": "beer_m"}))
    c.handle(CardPresented(CARD))
    (charge,) = only(c.handle(WalletBalance(CARD, 2000)), Charge)
    assert charge.products == ("beer_m",) and charge.amount_cents == -290
    # the relay gives the drink configured, whichever ladder step was charged ([gpio] relays key on it)
    assert only(c.handle(ChargeDone("k", 1710)), Dispense) == [Dispense(("beer",))]


# --- select mode --------------------------------------------------------------------------------


def test_select_cart_then_tap_pays_the_cart() -> None:
    c = Controller(SELECT, CATALOG)
    c.handle(ButtonPressed("b1"))
    fx = c.handle(ButtonPressed("b2"))
    cart = screens(fx)[0]
    assert isinstance(cart, CartScreen) and cart.total_cents == 550
    c.handle(CardPresented(CARD))
    (charge,) = only(c.handle(WalletBalance(CARD, 2000)), Charge)
    assert charge.products == ("espresso", "cappuccino") and charge.amount_cents == -550
    fx = c.handle(ChargeDone("k", 1450))
    assert screens(fx) == [ApprovedScreen(550, 1450)]
    assert only(fx, Dispense) == [Dispense(("espresso", "cappuccino"))], "each product, in the order chosen"
    assert c.cart == []


def test_the_cart_screen_lists_every_item_and_names_the_cancel_button() -> None:
    c = Controller(SELECT, CATALOG)
    for name in ("b1", "b2", "b1"):
        fx = c.handle(ButtonPressed(name))
    (cart,) = screens(fx)
    assert cart == CartScreen(
        (CartLine("Espresso", 2, 250), CartLine("Cappuccino", 1, 300)), cancel_button="cancel"
    )
    assert cart.text().lines == ("2x Espresso", "1x Cappuccino", "Tap to pay · [cancel]")
    fx = c.handle(ButtonPressed("cancel"))  # one press empties it, whatever it holds
    assert c.cart == [] and isinstance(screens(fx)[0], IdleScreen)


def test_a_product_the_server_drops_leaves_the_cart_so_the_screen_is_what_a_tap_pays() -> None:
    c = Controller(SELECT, CATALOG)
    c.handle(ButtonPressed("b1"))
    c.handle(ButtonPressed("b2"))
    fx = c.handle(CatalogChanged(tuple(p for p in CATALOG if p.id != "cappuccino")))
    assert screens(fx) == [CartScreen((CartLine("Espresso", 1, 250),), cancel_button="cancel")]
    c.handle(CardPresented(CARD))
    (charge,) = only(c.handle(WalletBalance(CARD, 2000)), Charge)
    assert charge.products == ("espresso",) and charge.amount_cents == -250


@pytest.mark.parametrize(
    ("settings", "button", "dropped"),
    [(SELECT, "b2", "cappuccino"), (TOPUP, "twenty", "topup_20")],
    ids=["select", "topup"],
)
def test_a_button_whose_product_the_server_dropped_says_so_to_guest_and_staff(
    settings: ControllerSettings, button: str, dropped: str
) -> None:
    c = Controller(settings, CATALOG)
    if settings.mode == "topup":
        c.handle(CardPresented(OPERATOR))
        c.handle(CardRemoved())
    c.handle(CatalogChanged(tuple(p for p in CATALOG if p.id != dropped)))
    fx = c.handle(ButtonPressed(button))
    assert screens(fx) == [DeclinedScreen(DeclineReason.BAD_PRODUCT)]
    assert screens(fx)[0].text().lines == ("Product unavailable",)
    assert Beep("error") in fx and c.cart == []
    (notice,) = only(fx, Notice)
    said = f"button {button!r} pressed: [{settings.mode}] buttons maps it to {dropped!r}"
    assert notice.message.startswith(said), notice.message
    # the cancel button and a button whose product is still offered are not refused
    assert not only(c.handle(ButtonPressed(settings.cancel_button or "")), Notice)
    other = next(name for name in settings.buttons if name != button)
    assert not only(c.handle(ButtonPressed(other)), Notice) and len(c.cart) == 1


def test_without_a_product_list_the_terminal_is_out_of_service_in_guest_words() -> None:
    for settings in (TAP, SELECT):
        c = Controller(settings, ())
        ask_staff = OutOfServiceScreen("Please ask staff")
        assert screens(c.start()) == [ask_staff]
        fx = c.handle(CardPresented(CARD))
        assert screens(fx) == [ask_staff] and not only(fx, LookupWallet)
        fx = c.handle(ButtonPressed("b1"))
        assert screens(fx) == [ask_staff] and not only(fx, Notice)
        c.handle(TimerFired(only(fx, StartTimer)[0].token))
        fx = c.handle(CatalogChanged(CATALOG))  # the list loaded: selling
        (idle,) = screens(fx)
        assert isinstance(idle, IdleScreen) and idle.prices


def test_select_empty_cart_shows_the_balance_without_charging() -> None:
    c = Controller(SELECT, CATALOG)
    c.handle(CardPresented(CARD))
    fx = c.handle(WalletBalance(CARD, 1234))
    assert screens(fx) == [BalanceScreen(1234)]
    assert not only(fx, Charge) and not only(fx, RecordDecline) and not only(fx, Dispense)


def test_select_cart_clears_on_cancel_and_on_timeout() -> None:
    c = Controller(SELECT, CATALOG)
    c.handle(ButtonPressed("b1"))
    fx = c.handle(ButtonPressed("cancel"))
    assert c.cart == [] and isinstance(screens(fx)[0], IdleScreen)
    fx = c.handle(ButtonPressed("b1"))
    (timer,) = only(fx, StartTimer)
    assert timer.delay_s == SELECT.cart_timeout_s
    fx = c.handle(ButtonPressed("b2"))  # a press restarts the timeout: the old timer is void
    c.handle(TimerFired(timer.token))
    assert len(c.cart) == 2
    (timer2,) = only(fx, StartTimer)
    fx = c.handle(TimerFired(timer2.token))
    assert c.cart == [] and isinstance(screens(fx)[0], IdleScreen)


# --- top-up kiosk ------------------------------------------------------------------------------


def unlocked() -> Controller:
    c = Controller(TOPUP, CATALOG)
    fx = c.handle(CardPresented(OPERATOR))
    assert screens(fx) == [KioskScreen(0, KIOSK_BUTTONS)] and c.operator == "olga"
    c.handle(CardRemoved())
    return c


def test_kiosk_is_locked_and_a_guest_card_only_says_so() -> None:
    c = Controller(TOPUP, CATALOG)
    assert screens(c.start()) == [KioskLockedScreen()]
    fx = c.handle(CardPresented(CARD))
    assert screens(fx) == [DeclinedScreen(DeclineReason.KIOSK_LOCKED)]
    assert not only(fx, LookupWallet) and not only(fx, Charge)
    # a declined tap like any other (counted by `taptill status`), asking the server nothing
    assert only(fx, RecordDecline) == [RecordDecline(CARD, (), 0, DeclineReason.KIOSK_LOCKED)]
    fx = c.handle(ButtonPressed("ten"))
    assert not only(fx, Charge) and c.cart == []


def test_operator_unlocks_picks_the_amount_and_the_guest_is_credited() -> None:
    c = unlocked()
    c.handle(ButtonPressed("ten"))
    fx = c.handle(ButtonPressed("twenty"))
    assert screens(fx) == [KioskScreen(3000, KIOSK_BUTTONS)]
    c.handle(CardPresented(CARD))
    (charge,) = only(c.handle(WalletBalance(CARD, 500)), Charge)
    assert charge == Charge(
        CARD,
        ("topup_10", "topup_20"),
        3000,
        online=True,
        balance_before=500,
        operator="olga",
    )
    fx = c.handle(ChargeDone("k", 3500))
    assert screens(fx) == [CreditScreen(3000, 3500)] and not only(fx, Dispense)
    assert c.cart == [] and c.operator is not None  # stays unlocked for the next guest


def test_kiosk_relocks_on_timeout_and_on_the_operator_tapping_again() -> None:
    c = Controller(TOPUP, CATALOG)
    fx = c.handle(CardPresented(OPERATOR))
    (timer,) = only(fx, StartTimer)
    assert timer.delay_s == TOPUP.unlock_s
    fx = c.handle(TimerFired(timer.token))
    assert c.operator is None and screens(fx) == [KioskLockedScreen()]
    c.handle(CardRemoved())
    c.handle(CardPresented(OPERATOR))
    c.handle(CardRemoved())
    fx = c.handle(CardPresented(OPERATOR))
    assert c.operator is None and screens(fx) == [KioskLockedScreen()]


def test_offline_top_up_is_booked_later() -> None:
    c = unlocked()
    c.handle(ButtonPressed("ten"))
    c.handle(CardPresented(CARD))
    (charge,) = only(c.handle(WalletUnreachable(CARD, view(balance=None, age=None))), Charge)
    assert charge.online is False and charge.amount_cents == 1000
    fx = c.handle(ChargeQueued("k"))
    assert screens(fx) == [CreditScreen(1000, None)]


def test_a_kiosk_button_on_a_debit_product_never_turns_into_a_charge() -> None:
    settings = replace(TOPUP, buttons={"ten": "topup_10", "oops": "espresso"})
    c = Controller(settings, CATALOG)
    c.handle(CardPresented(OPERATOR))
    c.handle(CardRemoved())
    c.handle(ButtonPressed("oops"))
    assert c.cart == []
    c.handle(CardPresented(CARD))
    fx = c.handle(WalletBalance(CARD, 0))
    assert screens(fx) == [BalanceScreen(0)] and not only(fx, Charge)


def test_a_credit_product_is_never_sold_by_a_tap_terminal() -> None:
    c = Controller(replace(TAP, products=("topup_10",)), CATALOG)
    fx = c.handle(CardPresented(CARD))
    assert screens(fx) == [DeclinedScreen(DeclineReason.BAD_PRODUCT)] and not only(fx, LookupWallet)
