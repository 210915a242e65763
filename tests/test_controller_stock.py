"""The controller and the stock ledger's word (yourbarmate, issue 15): a sold-out product is declined before
any lookup with nothing charged, cannot be put in a cart, and the board shows "sold out" and a low mark."""

from __future__ import annotations

from dataclasses import replace

from terminal.config import OfflineConfig
from terminal.controller import Controller, ControllerSettings
from terminal.effects import Beep, Charge, Effect, LookupWallet, Notice, RecordDecline, Show
from terminal.events import (
    ButtonPressed,
    CardPresented,
    PricesChanged,
    ServerChanged,
    StockChanged,
    WalletBalance,
)
from terminal.model import DeclineReason, Product
from terminal.screens import DeclinedScreen, IdleScreen, OfflineScreen, PriceLine, Screen

CATALOG = (Product("helles", "Helles", 450), Product("gin", "Gin Tonic", 900), Product("mate", "Mate", 300))
CARD = "04A1B2C3D4E5F6"
OFFLINE = OfflineConfig(mode="accept", max_per_card_cents=1000, max_total_cents=5000, max_balance_age_s=3600)
TAP = ControllerSettings(products=("helles",), offline=OFFLINE, rearm_absent_s=0)
SELECT = replace(TAP, products=(), mode="select", buttons={"b1": "helles", "b2": "gin"}, cancel_button="x")


def shown(effects: list[Effect]) -> list[Screen]:
    return [e.screen for e in effects if isinstance(e, Show)]


def test_a_tap_on_a_sold_out_product_is_declined_before_any_lookup_and_charges_nothing() -> None:
    c = Controller(TAP, CATALOG)
    c.start()
    c.handle(StockChanged({"helles": 0}))
    effects = c.handle(CardPresented(CARD))
    assert not [e for e in effects if isinstance(e, LookupWallet | Charge)]
    assert shown(effects) == [DeclinedScreen(DeclineReason.SOLD_OUT)]
    (record,) = [e for e in effects if isinstance(e, RecordDecline)]
    assert record == RecordDecline(CARD, ("helles",), -450, DeclineReason.SOLD_OUT)
    assert Beep("declined") in effects
    assert any(isinstance(e, Notice) and "helles" in e.message for e in effects)


def test_the_next_serving_is_sold_again_once_the_ledger_has_one() -> None:
    c = Controller(TAP, CATALOG)
    c.handle(StockChanged({"helles": 0}))
    c.handle(StockChanged({}))
    effects = c.handle(CardPresented(CARD))
    assert LookupWallet(CARD) in effects
    (charge,) = [e for e in c.handle(WalletBalance(CARD, 1000)) if isinstance(e, Charge)]
    assert charge.products == ("helles",) and charge.amount_cents == -450


def test_another_product_sold_out_does_not_stop_this_one() -> None:
    c = Controller(TAP, CATALOG)
    c.handle(StockChanged({"gin": 0}, frozenset({"helles"})))
    assert LookupWallet(CARD) in c.handle(CardPresented(CARD))


def test_the_tap_board_shows_sold_out_and_the_low_mark_and_redraws_when_the_stock_changes() -> None:
    c = Controller(TAP, CATALOG)
    c.start()
    assert c.idle_screen() == IdleScreen((PriceLine("Helles", 450, product="helles"),))
    effects = c.handle(StockChanged({}, frozenset({"helles"})))
    assert shown(effects) == [IdleScreen((PriceLine("Helles", 450, product="helles", low=True),))]
    assert c.handle(StockChanged({}, frozenset({"helles"}))) == []  # the same word: no redraw
    board = shown(c.handle(StockChanged({"helles": 0}, frozenset({"helles"}))))
    assert board == [IdleScreen((PriceLine("Helles", 450, product="helles", sold_out=True, low=True),))]
    assert board[0].text().lines == ("Helles sold out",)


def test_the_low_mark_has_its_footnote_and_the_offline_board_shows_sold_out_too() -> None:
    c = Controller(SELECT, CATALOG)
    c.handle(StockChanged({"gin": 0}, frozenset({"helles"})))
    assert c.idle_screen().text().lines == ("Helles 4,50 €!", "Gin Tonic sold out", "! low stock")
    c.handle(ServerChanged(False, 0))
    offline = c.idle_screen()
    assert isinstance(offline, OfflineScreen)
    assert [p.sold_out for p in offline.prices] == [False, True]


def test_a_sold_out_product_cannot_be_put_in_the_cart() -> None:
    c = Controller(SELECT, CATALOG)
    c.handle(StockChanged({"gin": 0}))
    effects = c.handle(ButtonPressed("b2"))
    assert shown(effects) == [DeclinedScreen(DeclineReason.SOLD_OUT)]
    assert c.cart == []
    assert not [e for e in effects if isinstance(e, RecordDecline)]  # a press is no tap: nothing to journal


def test_a_cart_whose_product_sold_out_meanwhile_is_declined_at_the_tap() -> None:
    c = Controller(SELECT, CATALOG)
    c.handle(ButtonPressed("b1"))
    c.handle(ButtonPressed("b2"))
    c.handle(StockChanged({"gin": 0}))
    effects = c.handle(CardPresented(CARD))
    assert shown(effects) == [DeclinedScreen(DeclineReason.SOLD_OUT)]
    assert not [e for e in effects if isinstance(e, LookupWallet | Charge)]


def test_a_partybroker_board_is_marked_by_the_drink_it_sells() -> None:
    c = Controller(TAP, CATALOG)
    c.handle(PricesChanged((PriceLine("Helles", 520, product="helles"),), charge={"helles": "gin"}))
    board = shown(c.handle(StockChanged({"helles": 0})))
    assert board == [IdleScreen((PriceLine("Helles", 520, product="helles", sold_out=True),))]
    # the ladder charges another wallet product, but the drink poured is the one sold out
    assert shown(c.handle(CardPresented(CARD))) == [DeclinedScreen(DeclineReason.SOLD_OUT)]


def test_a_tap_pouring_more_servings_than_are_left_is_declined_before_any_lookup() -> None:
    c = Controller(replace(TAP, products=("helles", "helles", "helles")), CATALOG)
    c.handle(StockChanged({"helles": 2}))  # not sold out, but the tap pours three
    effects = c.handle(CardPresented(CARD))
    assert not [e for e in effects if isinstance(e, LookupWallet | Charge)]
    assert shown(effects) == [DeclinedScreen(DeclineReason.SOLD_OUT)]
    assert any(isinstance(e, Notice) and "helles (2 left, 3 wanted)" in e.message for e in effects)
    three_left = Controller(replace(TAP, products=("helles", "helles", "helles")), CATALOG)
    three_left.handle(StockChanged({"helles": 3}))
    assert LookupWallet(CARD) in three_left.handle(CardPresented(CARD))


def test_the_cart_takes_no_more_servings_than_are_left_and_a_cart_beyond_them_is_declined() -> None:
    c = Controller(SELECT, CATALOG)
    c.handle(StockChanged({"helles": 2, "gin": 5}))
    c.handle(ButtonPressed("b1"))
    c.handle(ButtonPressed("b1"))
    effects = c.handle(ButtonPressed("b1"))  # a third helles: only two are left
    assert shown(effects) == [DeclinedScreen(DeclineReason.SOLD_OUT)]
    assert c.cart == ["helles", "helles"]
    c.handle(StockChanged({"helles": 1, "gin": 5}))  # a serving went meanwhile (a count, another sale)
    effects = c.handle(CardPresented(CARD))
    assert shown(effects) == [DeclinedScreen(DeclineReason.SOLD_OUT)]
    assert not [e for e in effects if isinstance(e, LookupWallet | Charge)]


def test_a_serving_fewer_of_a_product_on_sale_redraws_nothing() -> None:
    c = Controller(TAP, CATALOG)
    c.handle(StockChanged({"helles": 5}))
    assert c.handle(StockChanged({"helles": 4})) == []
    assert c.stock_left == {"helles": 4}


def test_a_word_read_before_a_sale_but_queued_behind_its_word_is_dropped() -> None:
    c = Controller(TAP, CATALOG)
    c.handle(StockChanged({"helles": 1}, seq=6))  # the sale's word, handed over before the tap's answer
    assert c.handle(StockChanged({"helles": 2}, seq=5)) == []  # a full read from before it, queued
    assert c.stock_left == {"helles": 1}
    c.handle(StockChanged({"helles": 0}, seq=7))
    assert c.sold_out == frozenset({"helles"})
