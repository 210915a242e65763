"""Table mode in the pure controller: choosing a table, the bill read again at the tap, every outcome screen,
the bill's key, a fixed table's own reads, never offline, nothing charged but the amount shown."""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

import pytest

from terminal.config import OfflineConfig
from terminal.controller import Controller, ControllerSettings
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
    BillOrder,
    BillRead,
    ButtonPressed,
    CardPresented,
    CardRemoved,
    CatalogChanged,
    ChargeDone,
    ChargeQueued,
    TableBill,
    TimerFired,
    WalletBalance,
    WalletRefused,
    WalletUnreachable,
)
from terminal.journal import OfflineView
from terminal.model import DeclineReason, Product
from terminal.screens import (
    DeclinedScreen,
    NotRegisteredScreen,
    OfflineScreen,
    OutOfServiceScreen,
    ProcessingScreen,
    Screen,
)
from terminal.screens.table import (
    BillLine,
    BillProblem,
    TableAlreadyPaidScreen,
    TableBillScreen,
    TableChangedScreen,
    TableChooseScreen,
    TableConfirmingScreen,
    TableLinesScreen,
    TableLoadingScreen,
    TablePaidScreen,
    TableProblemScreen,
)

T = TypeVar("T")

CATALOG = (
    Product("eur10", "10 €", 1000),
    Product("eur1", "1 €", 100),
    Product("ct10", "10 ct", 10),
    Product("ct1", "1 ct", 1),
)
DENOMINATIONS = {1000: "eur10", 100: "eur1", 10: "ct10", 1: "ct1"}
CARD = "04A1B2C3D4E5F6"
OFFLINE = OfflineConfig(
    mode="accept", max_per_card_cents=100000, max_total_cents=500000, max_balance_age_s=3600
)


def settings(**kw: object) -> ControllerSettings:
    base = ControllerSettings(
        products=(),
        offline=OFFLINE,
        mode="table",
        tables=(1, 2, 5),
        denominations=dict(DENOMINATIONS),
        rearm_absent_s=0,
        retap_guard_s=0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def bill(table: int = 2, amount: int = 2345, key: str = "bKEY", orders: int = 2) -> TableBill:
    per = [amount // orders] * orders
    per[-1] += amount - sum(per)
    return TableBill(
        key=key,
        table_id=table,
        party_id=50001,
        business_date="2026-11-30",
        amount_cents=amount,
        orders=tuple(BillOrder(99000 + i, i + 1, due) for i, due in enumerate(per)),
        lines=(BillLine("Burger", 1450), BillLine("Beer", 895)),
    )


def only(effects: list[Effect], kind: type[T]) -> list[T]:
    return [e for e in effects if isinstance(e, kind)]


def shown(effects: list[Effect]) -> Screen:
    screens = [e.screen for e in effects if isinstance(e, Show)]
    assert screens, effects
    return screens[-1]


def read(effects: list[Effect], **kw: object) -> BillRead:
    """The BillRead answering the one FetchBill in ``effects``."""
    (fetch,) = only(effects, FetchBill)
    values: dict[str, object] = {"bill": bill(fetch.table_id), "pay_key": None, **kw}
    return BillRead(fetch.token, fetch.table_id, **values)  # type: ignore[arg-type]


def choose_table_2(c: Controller, **kw: object) -> list[Effect]:
    """Staff press next (table 2) and ok; the bill is read and shown."""
    c.handle(ButtonPressed("next"))
    effects = c.handle(ButtonPressed("ok"))
    assert shown(effects) == TableLoadingScreen(2)
    return c.handle(read(effects, **kw))


def tap(c: Controller) -> list[Effect]:
    effects = c.handle(CardPresented(CARD))
    c.handle(CardRemoved())
    return effects


def test_staff_choose_a_table_and_its_bill_is_shown() -> None:
    c = Controller(settings(), CATALOG)
    assert shown(c.start()) == TableChooseScreen(1, 1, 3)
    assert shown(c.handle(ButtonPressed("prev"))) == TableChooseScreen(5, 3, 3)
    assert shown(c.handle(ButtonPressed("next"))) == TableChooseScreen(1, 1, 3)
    effects = choose_table_2(c)
    assert shown(effects) == TableBillScreen(2, 2345, 2)
    assert only(effects, StartTimer), "the bill on screen is read again now and then"
    assert shown(c.handle(ButtonPressed("next"))) == TableLinesScreen(2, 2345, bill().lines)
    assert shown(c.handle(ButtonPressed("prev"))) == TableBillScreen(2, 2345, 2)
    assert shown(c.handle(ButtonPressed("ok"))) == TableChooseScreen(2, 2, 3)


def test_a_tap_reads_the_bill_again_and_pays_exactly_it_under_its_key() -> None:
    c = Controller(settings(), CATALOG)
    c.start()
    choose_table_2(c)
    effects = tap(c)
    assert shown(effects) == ProcessingScreen()
    assert not only(effects, LookupWallet), "nothing is asked of the wallet before the bill is read again"
    effects = c.handle(read(effects, pay_key="bKEY"))
    assert only(effects, LookupWallet) == [LookupWallet(CARD)]
    effects = c.handle(WalletBalance(CARD, 5000))
    (charge,) = only(effects, Charge)
    # 23.45 = 2 x 10 € + 3 x 1 € + 4 x 10 ct + 5 x 1 ct: every denomination
    assert charge.products == ("eur10",) * 2 + ("eur1",) * 3 + ("ct10",) * 4 + ("ct1",) * 5
    assert charge.amount_cents == -2345 and charge.key == "bKEY" and charge.online
    assert charge.bill is not None and charge.bill.table_id == 2 and charge.bill.amount_cents == 2345
    effects = c.handle(ChargeDone("bKEY", 2655))
    assert shown(effects) == TablePaidScreen(2, 2345, 2655, close_at_pos=True)
    assert only(effects, Dispense) == [Dispense(())], "a table bill pulses no relay"
    assert "close at POS" in TablePaidScreen(2, 2345, 2655).text().lines[-1]


def test_a_retry_key_from_the_journal_is_the_key_charged() -> None:
    c = Controller(settings(), CATALOG)
    c.start()
    choose_table_2(c)
    c.handle(read(tap(c), pay_key="bKEY-2"))
    (charge,) = only(c.handle(WalletBalance(CARD, 5000)), Charge)
    assert charge.key == "bKEY-2"


def test_a_bill_changed_since_it_was_shown_is_shown_anew_and_nothing_is_charged() -> None:
    c = Controller(settings(), CATALOG)
    c.start()
    choose_table_2(c)
    changed = bill(amount=2945, key="bOTHER", orders=3)
    effects = c.handle(read(tap(c), bill=changed))
    assert shown(effects) == TableChangedScreen(2, 2945)
    assert not only(effects, LookupWallet) and not only(effects, Charge)
    (timer,) = only(effects, StartTimer)
    effects = c.handle(TimerFired(timer.token))
    assert shown(effects) == TableBillScreen(2, 2945, 3), "the new amount is what the next tap pays"
    # the guest taps again: this time the bill is the one shown
    effects = c.handle(read(tap(c), bill=changed))
    assert only(effects, LookupWallet)
    (charge,) = only(c.handle(WalletBalance(CARD, 5000)), Charge)
    assert charge.amount_cents == -2945 and charge.key == "bOTHER"


@pytest.mark.parametrize(
    "problem",
    [
        BillProblem.NO_PARTY,
        BillProblem.POS_UNAVAILABLE,
        BillProblem.ACCESS_DENIED,
        BillProblem.REFUSED,
        BillProblem.UNREADABLE,
        BillProblem.UNREACHABLE,
    ],
)
def test_every_problem_reading_the_bill_has_its_screen_and_charges_nothing(problem: BillProblem) -> None:
    c = Controller(settings(), CATALOG)
    c.start()
    effects = choose_table_2(c, bill=None, problem=problem, detail="what the POS said")
    assert shown(effects) == TableProblemScreen(2, problem)
    # a bill shown, then the POS fails at the tap
    c2 = Controller(settings(), CATALOG)
    c2.start()
    choose_table_2(c2)
    effects = c2.handle(read(tap(c2), bill=None, problem=problem, detail="what the POS said"))
    assert shown(effects) == TableProblemScreen(2, problem)
    assert only(effects, Notice), "staff read what the POS said in the log"
    assert not only(effects, LookupWallet) and not only(effects, Charge)


def test_nothing_due_is_its_own_screen_and_a_tap_on_it_charges_nothing() -> None:
    c = Controller(settings(), CATALOG)
    c.start()
    effects = choose_table_2(c, bill=bill(amount=0, orders=1))
    assert shown(effects) == TableProblemScreen(2, BillProblem.NOTHING_DUE)
    effects = c.handle(read(tap(c), bill=bill(amount=0, orders=1)))
    assert shown(effects) == TableProblemScreen(2, BillProblem.NOTHING_DUE)
    assert not only(effects, LookupWallet)


@pytest.mark.parametrize(("paid", "pending"), [("done", False), ("pending", True)])
def test_a_bill_the_journal_paid_already_is_not_charged_again(paid: str, pending: bool) -> None:
    c = Controller(settings(), CATALOG)
    c.start()
    choose_table_2(c)
    # e.g. paid, then the terminal was killed and restarted: the journal has the bill's key
    effects = c.handle(read(tap(c), paid=paid, pay_key="bKEY"))
    assert shown(effects) == TableAlreadyPaidScreen(2, pending=pending)
    assert not only(effects, LookupWallet) and not only(effects, Charge)
    # and staff choosing that table again see it too
    assert shown(c.handle(ButtonPressed("ok"))) == TableChooseScreen(2, 2, 3)
    effects = c.handle(read(c.handle(ButtonPressed("ok")), paid=paid))
    assert shown(effects) == TableAlreadyPaidScreen(2, pending=pending)


def test_a_key_the_wallet_had_booked_already_shows_already_paid() -> None:
    c = Controller(settings(), CATALOG)
    c.start()
    choose_table_2(c)
    c.handle(read(tap(c)))
    c.handle(WalletBalance(CARD, 5000))
    effects = c.handle(ChargeDone("bKEY", 5000, already=True))
    assert shown(effects) == TableAlreadyPaidScreen(2)
    assert Beep("declined") in effects and not only(effects, Dispense), "nothing is given for it"


def test_offline_a_table_bill_is_declined_whatever_the_offline_policy() -> None:
    c = Controller(settings(), CATALOG)
    c.start()
    choose_table_2(c)
    c.handle(read(tap(c)))
    view = OfflineView(5000, 10.0, 0, 0, 0, None)
    effects = c.handle(WalletUnreachable(CARD, view))
    assert shown(effects) == DeclinedScreen(DeclineReason.OFFLINE)
    assert not only(effects, Charge)
    (decline,) = only(effects, RecordDecline)
    assert decline.offline and "never" in str(decline.reason)


def test_insufficient_balance_and_unknown_card_are_the_cores_screens() -> None:
    c = Controller(settings(), CATALOG)
    c.start()
    choose_table_2(c)
    c.handle(read(tap(c)))
    effects = c.handle(WalletBalance(CARD, 2000))
    assert shown(effects) == DeclinedScreen(DeclineReason.INSUFFICIENT_BALANCE, 2000)
    c.handle(TimerFired(only(effects, StartTimer)[0].token))
    c.handle(read(tap(c)))
    effects = c.handle(WalletRefused(CARD, DeclineReason.UNKNOWN_CARD))
    assert shown(effects) == NotRegisteredScreen(CARD, None)


def test_a_payment_without_the_wallets_word_is_never_shown_paid() -> None:
    """No answer to the debit within the wallet client's deadline: "being confirmed", staff look at
    ``taptill status``; never "Paid · Booked shortly"."""
    c = Controller(settings(), CATALOG)
    c.start()
    choose_table_2(c)
    c.handle(read(tap(c)))
    (charge,) = only(c.handle(WalletBalance(CARD, 5000)), Charge)
    assert charge.offline_ok is False, "the device loop waits for the wallet's word and never queues it"
    effects = c.handle(ChargeQueued("bKEY", 2655))
    screen = shown(effects)
    assert screen == TableConfirmingScreen(2, 2345)
    assert "Paid" not in screen.text().title and "taptill status" in " ".join(screen.text().lines)


def test_a_card_with_a_sale_still_pending_is_declined_before_anything_is_charged() -> None:
    c = Controller(settings(), CATALOG)
    c.start()
    choose_table_2(c)
    c.handle(read(tap(c)))
    effects = c.handle(WalletBalance(CARD, 5000, 250))  # an earlier sale of 2,50 € on its way
    assert shown(effects) == DeclinedScreen(DeclineReason.EARLIER_PENDING)
    assert not only(effects, Charge)
    assert "Try again in a moment" in DeclinedScreen(DeclineReason.EARLIER_PENDING).text().lines[0]


def test_after_paying_staff_choose_the_next_table() -> None:
    c = Controller(settings(), CATALOG)
    c.start()
    choose_table_2(c)
    c.handle(read(tap(c)))
    c.handle(WalletBalance(CARD, 5000))
    effects = c.handle(ChargeDone("bKEY", 2655))
    (timer,) = only(effects, StartTimer)
    assert shown(c.handle(TimerFired(timer.token))) == TableChooseScreen(2, 2, 3)


def test_a_tap_with_no_table_chosen_charges_nothing() -> None:
    c = Controller(settings(), CATALOG)
    c.start()
    effects = tap(c)
    assert shown(effects) == TableChooseScreen(1, 1, 3)
    assert not only(effects, FetchBill) and not only(effects, LookupWallet)


def test_a_fixed_table_reads_its_bill_at_start_after_each_payment_and_while_idle() -> None:
    c = Controller(settings(tables=(), table_id=12, bill_refresh_s=30.0), CATALOG)
    effects = c.start()
    assert shown(effects) == TableLoadingScreen(12)
    effects = c.handle(read(effects, bill=bill(table=12)))
    assert shown(effects) == TableBillScreen(12, 2345, 2)
    (refresh,) = only(effects, StartTimer)
    assert refresh.delay_s == 30.0
    effects = c.handle(TimerFired(refresh.token))
    assert only(effects, FetchBill) == [FetchBill(12, only(effects, FetchBill)[0].token)]
    effects = c.handle(read(effects, bill=bill(table=12, amount=999, key="bNEW")))
    assert shown(effects) == TableBillScreen(12, 999, 2), "a bill that grew while idle is shown as it is now"
    c.handle(read(tap(c), bill=bill(table=12, amount=999, key="bNEW")))
    c.handle(WalletBalance(CARD, 5000))
    effects = c.handle(ChargeDone("bNEW", 4001))
    assert shown(effects) == TablePaidScreen(12, 999, 4001)
    (timer,) = only(effects, StartTimer)
    effects = c.handle(TimerFired(timer.token))
    assert only(effects, FetchBill), "after a payment the table's bill is read again"
    effects = c.handle(read(effects, bill=None, problem=BillProblem.NO_PARTY))
    assert shown(effects) == TableProblemScreen(12, BillProblem.NO_PARTY)


def test_a_stale_answer_is_ignored() -> None:
    c = Controller(settings(), CATALOG)
    c.start()
    c.handle(ButtonPressed("next"))
    first = c.handle(ButtonPressed("ok"))
    c.handle(ButtonPressed("ok"))  # staff gave up waiting: back to choosing
    assert c.handle(read(first)) == []
    assert shown(c.handle(ButtonPressed("next"))) == TableChooseScreen(5, 3, 3)


def test_wallet_prices_that_are_not_the_denominations_put_the_terminal_out_of_service() -> None:
    wrong = (Product("eur10", "10 €", 1000), Product("eur1", "1 €", 110), *CATALOG[2:])
    c = Controller(settings(), wrong)
    assert shown(c.start()) == OutOfServiceScreen("Please ask staff")
    effects = tap(c)
    assert shown(effects) == OutOfServiceScreen("Please ask staff")
    (note,) = only(effects, Notice)
    assert "eur1" in note.message and "110" in note.message
    # the wallet's price is fixed: selling again after the next catalog refresh
    c.handle(CatalogChanged(CATALOG))
    assert shown(c.handle(ButtonPressed("next"))) == TableChooseScreen(2, 2, 3)


def test_prices_changed_between_the_check_and_the_tap_refuse_the_tap() -> None:
    c = Controller(settings(), CATALOG)
    c.start()
    choose_table_2(c)
    # the core prices the products as it knows them: a sum other than the amount shown charges nothing
    c.catalog = (Product("eur10", "10 €", 1000), Product("eur1", "1 €", 101), *CATALOG[2:])
    effects = c.handle(read(tap(c)))
    assert shown(effects) == DeclinedScreen(DeclineReason.BAD_PRODUCT)
    assert not only(effects, LookupWallet) and only(effects, Notice)


def test_while_the_wallet_server_is_down_the_table_terminal_says_cards_cannot_be_used() -> None:
    c = Controller(settings(), CATALOG)
    c.start()
    c.server_online = False
    assert isinstance(c.idle_screen(), OfflineScreen) and not c.idle_screen().accepting  # type: ignore[attr-defined]
