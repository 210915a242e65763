"""What every end of a tap gives, whole: the screen, the beep, what is journaled, what is poured, the result's
timer; and the states the core leaves for the next guest (issue 18: the controller core's mutants).

Each test compares a tap's effects as a list, so a beep that goes missing, a decline journaled without
its reason or with another, an offline flag dropped, a Notice too many, is a failing test. Timer tokens
are numbers the core hands out; ``shape`` sets them to 0 so the list can be written down.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar, cast

import pytest

from terminal.config import Mode, OfflineConfig, OperatorEntry
from terminal.controller import Controller, ControllerSettings, Phase
from terminal.controller.mode import CardAnswer, Sale, SellMode, Till
from terminal.controller.modes import MODES
from terminal.controller.operators import OperatorBook, card_entry
from terminal.effects import (
    Beep,
    Charge,
    Dispense,
    Effect,
    FetchBill,
    LookupWallet,
    Notice,
    RecordDecline,
    Show,
    StartTimer,
)
from terminal.events import (
    BillRead,
    ButtonPressed,
    CardPresented,
    CardRemoved,
    CatalogChanged,
    ChargeDone,
    ChargeFailed,
    ChargeQueued,
    ChargeRejected,
    Closing,
    ReaderChanged,
    ServerChanged,
    StockChanged,
    StorageChanged,
    TableBill,
    TimerFired,
    TokenChanged,
    UnsellableChanged,
    WalletBalance,
    WalletRefused,
    WalletUnreachable,
)
from terminal.journal import OfflineView
from terminal.model import DeclineReason, Product
from terminal.screens import (
    ApprovedScreen,
    CreditScreen,
    DeclinedScreen,
    IdleScreen,
    KioskScreen,
    NotRegisteredScreen,
    OutOfServiceScreen,
    PriceLine,
    ReaderOfflineScreen,
    Screen,
)
from terminal.screens.table import TableBillScreen, TableLoadingScreen
from tests.test_controller_table import bill as table_bill
from tests.test_controller_table import settings as table_settings

T = TypeVar("T")

CATALOG = (
    Product("espresso", "Espresso", 250),
    Product("cappuccino", "Cappuccino", 300),
    Product("topup_10", "Aufladung 10 €", -1000),
)
CARD = "04A1B2C3D4E5F6"
OTHER = "04BBBBBBBBBBBB"
OPERATOR = "04000000AAAAAA"
OPERATOR_KEY = bytes(range(32))  # the terminal's operator key (a test value)
OPERATORS = OperatorBook(OPERATOR_KEY, [OperatorEntry("olga", card_entry(OPERATOR_KEY, OPERATOR))])
OFFLINE = OfflineConfig(mode="accept", max_per_card_cents=1000, max_total_cents=5000, max_balance_age_s=3600)
URL = "https://pair.example"
HOLD = 2.5  # the result screen's time, unlike every other delay here
TAP = ControllerSettings(
    products=("espresso", "espresso"),
    offline=OFFLINE,
    pairing_url=URL,
    screen_hold_s=HOLD,
    rearm_absent_s=0.5,
)
SELECT = replace(
    TAP, products=(), mode="select", buttons={"b1": "espresso", "b2": "cappuccino"}, cancel_button="cancel"
)
TOPUP = replace(TAP, products=(), mode="topup", buttons={"ten": "topup_10"}, operators=OPERATORS)
TABLE_CATALOG = (  # table mode's denominations (tests/test_controller_table.py)
    Product("eur10", "10 €", 1000),
    Product("eur1", "1 €", 100),
    Product("ct10", "10 ct", 10),
    Product("ct1", "1 ct", 1),
)
ASK_STAFF = OutOfServiceScreen("Please ask staff")
RESULT_TIMER = StartTimer(0, HOLD)
GUARD_TIMER = StartTimer(0, TAP.retap_guard_s)  # money moved: the card is not a new tap for a while


def shape(effects: list[Effect]) -> list[Effect]:
    """``effects`` with every timer's token 0 (tokens are the core's counter; the delay says which timer)."""
    return [StartTimer(0, e.delay_s) if isinstance(e, StartTimer) else e for e in effects]


def only(effects: list[Effect], kind: type[T]) -> list[T]:
    return [e for e in effects if isinstance(e, kind)]


def screens(effects: list[Effect]) -> list[Screen]:
    return [e.screen for e in effects if isinstance(e, Show)]


def view(
    balance: int | None = 2000, age: float | None = 10.0, card: int = 0, total: int = 0, credit: int = 0
) -> OfflineView:
    return OfflineView(balance, age, card, total, 0, None, credit)


def deciding(settings: ControllerSettings = TAP) -> Controller:
    """A tap of CARD whose wallet lookup is under way."""
    c = Controller(settings, CATALOG)
    c.start()
    assert LookupWallet(CARD) in c.handle(CardPresented(CARD))
    return c


def charging(settings: ControllerSettings = TAP) -> Controller:
    """A tap of CARD, looked up online and being charged 5 € (two espressos)."""
    c = deciding(settings)
    assert only(c.handle(WalletBalance(CARD, 2000)), Charge)
    return c


def unlocked(settings: ControllerSettings = TOPUP) -> Controller:
    """A top-up kiosk Olga unlocked, ten euros chosen, and a guest's card being looked up."""
    c = Controller(settings, CATALOG)
    c.handle(CardPresented(OPERATOR))
    c.handle(CardRemoved())
    assert screens(c.handle(ButtonPressed("ten"))) == [KioskScreen(1000, (("ten", 1000),))]
    assert LookupWallet(CARD) in c.handle(CardPresented(CARD))
    return c


class Scripted(SellMode):
    """A mode from outside the package whose tap pays what the test sets in ``sale``; it notes what the
    core tells it of each tap's end (``told``)."""

    sale: CardAnswer = Sale(("espresso",), goods=("espresso",))

    def __init__(self, till: Till) -> None:
        super().__init__(till)
        self.told: list[str] = []

    def idle_screen(self) -> Screen:
        return IdleScreen((), title="scripted")

    def card(self, uid: str) -> CardAnswer:
        return self.sale

    def paid(self) -> None:
        self.told.append("paid")

    def declined(self) -> None:
        self.told.append("declined")


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> tuple[Controller, Scripted]:
    monkeypatch.setitem(MODES, "scripted", Scripted)
    c = Controller(replace(TAP, products=(), mode=cast(Mode, "scripted")), CATALOG)
    c.start()
    return c, cast(Scripted, c.mode)


# --- refused before any lookup ------------------------------------------------------------------------


def test_an_unwritable_journal_refuses_each_tap_with_an_error_beep_and_its_message() -> None:
    c = Controller(TAP, CATALOG)
    assert c.handle(StorageChanged(False, "disk full")) == [Show(OutOfServiceScreen("disk full"))]
    assert shape(c.handle(CardPresented(CARD))) == [
        Show(OutOfServiceScreen("disk full")),
        Beep("error"),
        RESULT_TIMER,
    ]
    # without a message of its own the guest reads "ask staff", never an empty line
    c = Controller(TAP, CATALOG)
    assert c.handle(StorageChanged(False)) == [Show(ASK_STAFF)]
    assert shape(c.handle(CardPresented(CARD))) == [Show(ASK_STAFF), Beep("error"), RESULT_TIMER]


def test_a_refused_api_token_puts_the_terminal_out_of_service_until_the_server_takes_it_again() -> None:
    c = Controller(TAP, CATALOG)
    assert c.handle(TokenChanged(True)) == [Show(ASK_STAFF)]
    refused = c.handle(CardPresented(CARD))
    assert shape(refused) == [Show(ASK_STAFF), Beep("error"), RESULT_TIMER]
    c.handle(CardRemoved())
    c.handle(TimerFired(only(refused, StartTimer)[0].token))
    (board,) = screens(c.handle(TokenChanged(False)))
    assert isinstance(board, IdleScreen)
    assert LookupWallet(CARD) in c.handle(CardPresented(CARD))


@pytest.mark.parametrize("settings", [TAP, SELECT], ids=["tap", "select"])
def test_without_a_product_list_a_tap_and_a_press_get_the_error_beep(settings: ControllerSettings) -> None:
    c = Controller(settings, ())
    assert shape(c.handle(CardPresented(CARD))) == [Show(ASK_STAFF), Beep("error"), RESULT_TIMER]
    assert shape(c.handle(ButtonPressed("b1"))) == [Show(ASK_STAFF), Beep("error"), RESULT_TIMER]


def test_a_closing_terminal_says_so_and_takes_no_tap_nor_press() -> None:
    c = Controller(SELECT, CATALOG)
    c.handle(ButtonPressed("b1"))
    assert c.handle(Closing()) == [Show(OutOfServiceScreen("closing, back in a moment"))]
    assert c.handle(CardPresented(CARD)) == []
    assert c.handle(ButtonPressed("b2")) == [] and c.cart == ["espresso"]


def test_a_reader_gone_shows_reconnecting_and_its_return_the_board() -> None:
    c = Controller(TAP, CATALOG)
    assert c.handle(ReaderChanged(False, "pcscd restarted")) == [Show(ReaderOfflineScreen("reconnecting…"))]
    (board,) = screens(c.handle(ReaderChanged(True)))
    assert isinstance(board, IdleScreen)


def test_the_same_server_state_again_redraws_nothing() -> None:
    c = Controller(TAP, CATALOG)
    assert screens(c.handle(ServerChanged(False, 2)))
    assert c.handle(ServerChanged(False, 2)) == []


def test_a_press_while_a_tap_is_decided_changes_nothing_it_pays() -> None:
    c = Controller(SELECT, CATALOG)
    c.handle(ButtonPressed("b1"))
    c.handle(CardPresented(CARD))
    assert c.handle(ButtonPressed("b2")) == [] and c.cart == ["espresso"]
    (charge,) = only(c.handle(WalletBalance(CARD, 2000)), Charge)
    assert (charge.products, charge.amount_cents) == (("espresso",), -250)


def test_a_tap_paying_a_product_the_catalog_lacks_is_refused_whole() -> None:
    c = Controller(replace(TAP, products=("espresso", "ristretto")), CATALOG)
    assert shape(c.handle(CardPresented(CARD))) == [
        Show(DeclinedScreen(DeclineReason.BAD_PRODUCT)),
        Beep("error"),
        RESULT_TIMER,
    ]


def test_sold_out_names_every_product_short_for_staff() -> None:
    c = Controller(SELECT, CATALOG)
    c.handle(ButtonPressed("b2"))
    c.handle(ButtonPressed("b1"))
    c.handle(StockChanged({"espresso": 0, "cappuccino": 0}))
    note = (
        "sold out (taptill stock): cappuccino (0 left, 1 wanted), espresso (0 left, 1 wanted);"
        " nothing charged"
    )
    assert shape(c.handle(CardPresented(CARD))) == [
        Show(DeclinedScreen(DeclineReason.SOLD_OUT)),
        RecordDecline(CARD, ("cappuccino", "espresso"), -550, DeclineReason.SOLD_OUT),
        Beep("declined"),
        Notice(note),
        RESULT_TIMER,
    ]


def test_wallet_prices_other_than_the_amount_shown_charge_nothing_and_say_both(
    scripted: tuple[Controller, Scripted],
) -> None:
    c, mode = scripted
    mode.sale = Sale(("espresso", "cappuccino"), expect_cents=500)
    note = (
        "the wallet prices of espresso, cappuccino add up to 550 cents, not the 500 cents shown;"
        " nothing charged"
    )
    assert shape(c.handle(CardPresented(CARD))) == [
        Show(DeclinedScreen(DeclineReason.BAD_PRODUCT)),
        Beep("error"),
        Notice(note),
        RESULT_TIMER,
    ]


def test_a_refusal_without_a_note_logs_nothing() -> None:
    c = Controller(TOPUP, CATALOG)  # locked: a press is refused
    assert shape(c.handle(ButtonPressed("ten"))) == [
        Show(DeclinedScreen(DeclineReason.KIOSK_LOCKED)),
        Beep("declined"),
        RESULT_TIMER,
    ]


# --- the wallet's answer ------------------------------------------------------------------------------


def test_a_balance_check_of_an_unknown_card_offers_pairing_and_journals_no_sale() -> None:
    c = deciding(SELECT)  # nothing chosen: the tap shows the balance
    assert shape(c.handle(WalletRefused(CARD, DeclineReason.UNKNOWN_CARD))) == [
        Show(NotRegisteredScreen(CARD, URL)),
        Beep("declined"),
        RESULT_TIMER,
    ]


def test_a_balance_check_offline_shows_the_last_balance_seen() -> None:
    c = deciding(SELECT)
    assert shape(c.handle(WalletUnreachable(CARD, view(balance=1234)))) == [
        Show(DeclinedScreen(DeclineReason.OFFLINE, 1234)),
        RESULT_TIMER,
    ]


@pytest.mark.parametrize(
    ("reason", "screen"),
    [
        (DeclineReason.DENIED_CARD, DeclinedScreen(DeclineReason.DENIED_CARD)),
        (DeclineReason.OUT_OF_SERVICE, ASK_STAFF),
        (DeclineReason.UNKNOWN_CARD, NotRegisteredScreen(CARD, URL)),
    ],
)
def test_a_refused_lookup_shows_its_own_screen_and_journals_its_reason(
    reason: DeclineReason, screen: Screen
) -> None:
    assert shape(deciding().handle(WalletRefused(CARD, reason))) == [
        Show(screen),
        RecordDecline(CARD, ("espresso", "espresso"), -500, reason),
        Beep("declined"),
        RESULT_TIMER,
    ]


def test_a_bill_whose_card_has_a_sale_on_its_way_journals_why_it_was_declined(
    scripted: tuple[Controller, Scripted],
) -> None:
    c, mode = scripted
    mode.sale = Sale(("espresso",), offline_ok=False)
    c.handle(CardPresented(CARD))
    note = "an earlier sale of this card is still being confirmed by the wallet"
    assert shape(c.handle(WalletBalance(CARD, 2000, 250))) == [
        Show(DeclinedScreen(DeclineReason.EARLIER_PENDING)),
        RecordDecline(CARD, ("espresso",), -250, note),
        Beep("declined"),
        RESULT_TIMER,
    ]


def test_a_sale_that_needs_the_wallets_word_is_declined_offline_with_that_reason(
    scripted: tuple[Controller, Scripted],
) -> None:
    c, mode = scripted
    mode.sale = Sale(("espresso",), offline_ok=False)
    c.handle(CardPresented(CARD))
    note = "offline: this sale is never made without the wallet server's word"
    assert shape(c.handle(WalletUnreachable(CARD, view()))) == [
        Show(DeclinedScreen(DeclineReason.OFFLINE)),
        RecordDecline(CARD, ("espresso",), -250, note, True),
        Beep("declined"),
        RESULT_TIMER,
    ]


def test_offline_products_the_server_cannot_book_are_declined_by_name() -> None:
    c = Controller(SELECT, CATALOG)
    c.handle(UnsellableChanged(frozenset({"espresso", "cappuccino", "mate"})))
    c.handle(ButtonPressed("b2"))
    c.handle(ButtonPressed("b1"))
    c.handle(CardPresented(CARD))
    note = "offline: the server cannot book product Cappuccino (id cappuccino), Espresso (id espresso)"
    assert shape(c.handle(WalletUnreachable(CARD, view()))) == [
        Show(DeclinedScreen(DeclineReason.BAD_PRODUCT)),
        RecordDecline(CARD, ("cappuccino", "espresso"), -550, note, True),
        Beep("declined"),
        RESULT_TIMER,
    ]
    # the rest of the catalog is still sold offline
    c = Controller(replace(TAP, unsellable=frozenset({"cappuccino"})), CATALOG)
    c.handle(CardPresented(CARD))
    assert only(c.handle(WalletUnreachable(CARD, view())), Charge)


def test_a_product_the_catalog_dropped_while_the_tap_was_decided_is_named_by_its_id() -> None:
    c = deciding(replace(TAP, unsellable=frozenset({"espresso"})))
    c.handle(CatalogChanged(CATALOG[1:]))
    (record,) = only(c.handle(WalletUnreachable(CARD, view())), RecordDecline)
    assert record.reason == "offline: the server cannot book product espresso"


def test_offline_too_little_shows_what_the_card_can_still_spend() -> None:
    # the last balance less this card's unconfirmed sales: 900 - 500 = 400, short of 500
    c = deciding()
    assert shape(c.handle(WalletUnreachable(CARD, view(balance=900, card=500)))) == [
        Show(DeclinedScreen(DeclineReason.INSUFFICIENT_BALANCE, 400)),
        RecordDecline(CARD, ("espresso", "espresso"), -500, "offline: balance 400 < 500", True),
        Beep("declined"),
        RESULT_TIMER,
    ]
    # over a limit, no balance is shown: the guest could pay, the terminal may not lend more
    (shown,) = screens(deciding().handle(WalletUnreachable(CARD, view(card=501))))
    assert shown == DeclinedScreen(DeclineReason.OFFLINE_LIMIT)


# --- top-ups offline --------------------------------------------------------------------------------------


def test_an_offline_top_up_is_journaled_as_such_and_counted_unconfirmed() -> None:
    c = unlocked()
    (charge,) = only(c.handle(WalletUnreachable(CARD, view(balance=None, age=None))), Charge)
    assert charge == Charge(
        CARD,
        ("topup_10",),
        1000,
        online=False,
        balance_before=None,
        reason="offline: top-up",
        operator="olga",
    )
    assert shape(c.handle(ChargeQueued("k"))) == [
        Show(CreditScreen(1000)),
        Beep("approved"),
        RESULT_TIMER,
        GUARD_TIMER,
    ]
    assert c.unconfirmed == 1


def test_offline_top_ups_stop_at_the_cap_and_one_reaching_it_exactly_is_booked() -> None:
    capped = replace(TOPUP, max_offline_credit_cents=1500)
    assert only(unlocked(capped).handle(WalletUnreachable(CARD, view(credit=500))), Charge)
    note = "offline: top-up limit ([topup] max_offline_credit_cents)"
    assert shape(unlocked(capped).handle(WalletUnreachable(CARD, view(credit=1000)))) == [
        Show(DeclinedScreen(DeclineReason.OFFLINE_LIMIT)),
        RecordDecline(CARD, ("topup_10",), 1000, note, True),
        Beep("declined"),
        RESULT_TIMER,
    ]


def test_a_kiosk_whose_policy_declines_offline_journals_the_top_up_declined() -> None:
    c = unlocked(replace(TOPUP, offline=replace(OFFLINE, mode="decline")))
    assert shape(c.handle(WalletUnreachable(CARD, view()))) == [
        Show(DeclinedScreen(DeclineReason.OFFLINE)),
        RecordDecline(CARD, ("topup_10",), 1000, "offline: policy declines", True),
        Beep("declined"),
        RESULT_TIMER,
    ]


# --- the charge's answer ----------------------------------------------------------------------------------


def test_a_booked_sale_pours_under_its_key() -> None:
    fx = charging().handle(ChargeDone("k1", 1500))
    assert shape(fx)[:3] == [
        Show(ApprovedScreen(500, 1500)),
        Dispense(("espresso", "espresso")),
        Beep("approved"),
    ]
    (pour,) = only(fx, Dispense)
    assert pour.key == "k1", "the journal notes the pulses given against the sale's key"


def test_a_sale_queued_while_online_shows_the_estimate_and_pours_under_its_key() -> None:
    fx = charging().handle(ChargeQueued("k2", 1500))
    assert shape(fx)[:3] == [
        Show(ApprovedScreen(500, 1500, confirmed=False, offline=False)),
        Dispense(("espresso", "espresso")),
        Beep("approved"),
    ]
    (pour,) = only(fx, Dispense)
    assert pour.key == "k2"


def test_every_offline_sale_counts_unconfirmed() -> None:
    c = Controller(replace(TAP, retap_guard_s=0.0), CATALOG)
    for uid in (CARD, OTHER):
        c.handle(CardPresented(uid))
        c.handle(WalletUnreachable(uid, view()))
        c.handle(ChargeQueued("k"))
    assert c.unconfirmed == 2


def test_a_credit_booked_shows_the_new_balance_with_the_approved_beep() -> None:
    c = unlocked()
    c.handle(WalletBalance(CARD, 500))
    assert shape(c.handle(ChargeDone("k", 1500))) == [
        Show(CreditScreen(1000, 1500)),
        Beep("approved"),
        RESULT_TIMER,
        GUARD_TIMER,
    ]


@pytest.mark.parametrize(
    ("reason", "screen"),
    [
        (DeclineReason.UNKNOWN_CARD, NotRegisteredScreen(CARD, URL)),
        (DeclineReason.PERMISSION, DeclinedScreen(DeclineReason.PERMISSION)),
    ],
)
def test_a_sale_the_server_rejects_shows_why_with_the_declined_beep(
    reason: DeclineReason, screen: Screen
) -> None:
    assert shape(charging().handle(ChargeRejected("k", reason))) == [
        Show(screen),
        Beep("declined"),
        RESULT_TIMER,
    ]


def test_a_sale_that_could_not_be_journaled_shows_why_with_the_error_beep() -> None:
    assert shape(charging().handle(ChargeFailed("journal not writable"))) == [
        Show(OutOfServiceScreen("journal not writable")),
        Beep("error"),
        RESULT_TIMER,
    ]


def test_a_key_booked_before_the_tap_shows_the_amount_and_balance_and_pours_nothing(
    scripted: tuple[Controller, Scripted],
) -> None:
    c, mode = scripted
    mode.sale = Sale(("espresso", "cappuccino"), key="bill-7")
    c.handle(CardPresented(CARD))
    c.handle(WalletBalance(CARD, 2000))
    assert shape(c.handle(ChargeDone("bill-7", 1450, already=True))) == [
        Show(ApprovedScreen(550, 1450)),
        Beep("declined"),
        RESULT_TIMER,
        GUARD_TIMER,
    ]


def test_only_a_credit_names_an_operator(scripted: tuple[Controller, Scripted]) -> None:
    c, mode = scripted
    mode.sale = Sale(("espresso",), operator="olga")  # a debit: the operator is responsible for credits
    c.handle(CardPresented(CARD))
    (charge,) = only(c.handle(WalletBalance(CARD, 2000)), Charge)
    assert charge.operator is None


# --- what the next guest and the mode are left with ---------------------------------------------------


def test_a_paid_tap_tells_the_mode_paid_and_never_declined(scripted: tuple[Controller, Scripted]) -> None:
    c, mode = scripted
    c.handle(CardPresented(CARD))
    c.handle(WalletBalance(CARD, 2000))
    c.handle(ChargeDone("k", 1750))
    assert mode.told == ["paid"]
    c.handle(CardPresented(OTHER))
    c.handle(WalletBalance(OTHER, 100))
    assert mode.told == ["paid", "declined"]


def test_a_refused_press_after_a_declined_tap_keeps_the_next_guests_cart() -> None:
    c = Controller(SELECT, CATALOG)
    c.handle(ButtonPressed("b1"))
    c.handle(CardPresented(CARD))
    c.handle(WalletBalance(CARD, 100))  # guest A: too little, the cart is emptied
    c.handle(CardRemoved())
    c.handle(StockChanged({"cappuccino": 0}))
    c.handle(ButtonPressed("b1"))  # guest B chooses an espresso...
    (refused,) = screens(c.handle(ButtonPressed("b2")))  # ...and presses for a sold-out cappuccino
    assert refused == DeclinedScreen(DeclineReason.SOLD_OUT)
    assert c.cart == ["espresso"]


def test_an_earlier_results_timer_does_not_end_the_result_on_screen() -> None:
    c = Controller(replace(TAP, retap_guard_s=0.0), CATALOG)
    c.handle(CardPresented(CARD))
    c.handle(WalletBalance(CARD, 2000))
    (first,) = only(c.handle(ChargeDone("k1", 1500)), StartTimer)
    c.handle(CardPresented(OTHER))  # the next guest, while the first result shows
    c.handle(WalletBalance(OTHER, 2000))
    (second,) = only(c.handle(ChargeDone("k2", 1500)), StartTimer)
    assert c.handle(TimerFired(first.token)) == [] and c.phase is Phase.RESULT
    (board,) = screens(c.handle(TimerFired(second.token)))
    assert isinstance(board, IdleScreen) and board.prices == (PriceLine("Espresso", 250, product="espresso"),)


def read(effects: list[Effect], bill: TableBill) -> BillRead:
    """The POS's answer to the one FetchBill in ``effects``: ``bill``."""
    (fetch,) = only(effects, FetchBill)
    return BillRead(fetch.token, fetch.table_id, bill)


def test_a_bill_read_again_while_a_result_shows_leaves_the_result_its_time() -> None:
    c = Controller(table_settings(), TABLE_CATALOG)
    c.start()
    c.handle(ButtonPressed("next"))
    shown = c.handle(read(c.handle(ButtonPressed("ok")), table_bill()))
    assert screens(shown) == [TableBillScreen(2, 2345, 2)]
    (refresh,) = only(shown, StartTimer)  # the bill on screen is read again when this fires
    # a guest taps; the POS has another bill by now: "bill changed" shows for its time
    changed = table_bill(amount=2945, key="bOTHER")
    (hold,) = only(c.handle(read(c.handle(CardPresented(CARD)), changed)), StartTimer)
    assert c.handle(TimerFired(refresh.token)) == [] and c.phase is Phase.RESULT
    assert screens(c.handle(TimerFired(hold.token))) == [TableBillScreen(2, 2945, 2)]


def test_a_bill_arriving_while_a_tap_is_refused_leaves_the_refusal_its_time() -> None:
    c = Controller(table_settings(), TABLE_CATALOG)
    c.start()
    c.handle(ButtonPressed("next"))
    loading = c.handle(ButtonPressed("ok"))
    refused = c.handle(CardPresented(CARD))  # the bill is still being read: no tap yet
    assert screens(refused) == [TableLoadingScreen(2)]
    assert c.handle(read(loading, table_bill())) == [] and c.phase is Phase.RESULT
    (hold,) = only(refused, StartTimer)
    assert screens(c.handle(TimerFired(hold.token))) == [TableBillScreen(2, 2345, 2)]
