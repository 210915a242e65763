"""Table mode: a guest pays a table's open bill in the POS (PAR Brink) with the wallet card.

Staff choose the table with the buttons ``next``/``prev``/``ok`` (or the terminal is mounted at one
``table_id`` and reads that table's bill itself); the bill is read from the POS (``FetchBill``, answered by
``BillRead``) and shown. A tap reads it again before anything else (an ``Ask``): the same bill (its key)
is paid with the wallet's denomination products adding up to exactly the amount shown, under the bill's
key; a changed bill is shown with nothing charged; a bill this journal paid already is not paid again.
A table bill is never sold offline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from terminal.controller.mode import Ask, CardAnswer, Redraw, Refusal, Sale, SellMode, Till
from terminal.effects import Effect, FetchBill, StartTimer
from terminal.events import BillRead, Event, TableBill
from terminal.model import DeclineReason, Product, ProductId
from terminal.screens import ASK_STAFF, DeclinedScreen, OfflineScreen, OutOfServiceScreen, Screen
from terminal.screens.table import (
    PAY_ACTION,
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
from terminal.wallet.denominations import check_prices, decompose

NEXT, PREV, OK = "next", "prev", "ok"
BUTTONS = (NEXT, PREV, OK)

Stage = Literal["choose", "loading", "bill", "lines", "problem", "paid"]


def price_problems(denominations: Mapping[int, ProductId], products: Iterable[Product]) -> tuple[str, ...]:
    """One line per denomination product the wallet does not list at its [table] value (for the log,
    ``status`` and ``doctor``): while there is one, the terminal is out of service. Empty when there is
    no product list to check against (nothing can be sold then anyway)."""
    listed = tuple(products)
    if not listed:
        return ()
    fix = "fix the wallet product's price or [table] denominations"
    return tuple(f"[table] {line} ({fix})" for line in check_prices(denominations, listed))


class TableMode(SellMode):
    """``tables`` to choose from, or one fixed ``table_id``; the bill on screen is read again every
    ``bill_refresh_s`` while idle and after every tap's result."""

    def __init__(self, till: Till) -> None:
        super().__init__(till)
        s = till.settings
        self._fixed = s.table_id is not None
        self._tables: tuple[int, ...] = (s.table_id,) if s.table_id is not None else s.tables
        self._index = 0
        self._stage: Stage = "loading" if self._fixed else "choose"
        self._bill: TableBill | None = None  # the bill on screen (what a tap may pay)
        self._problem = BillProblem.NO_PARTY
        self._pending_paid = False  # the "paid" stage: paid here, still being confirmed
        self._fetch = 0  # the FetchBill whose answer counts; older answers are ignored
        self._for_tap = False  # that answer decides a tap (the core waits on an Ask)
        self._refresh = 0
        self._paying: TableBill | None = None  # the bill of the tap under way or just paid
        self._price_problems = self._check_prices()

    # --- what the core calls ---------------------------------------------------------------------

    def start(self) -> tuple[Effect, ...]:
        if self._fixed:
            return (self._fetch_bill(),)
        return ()

    @property
    def table(self) -> int:
        return self._tables[self._index]

    def idle_screen(self) -> Screen:
        if self._price_problems:
            return OutOfServiceScreen(ASK_STAFF)
        if not self.till.server_online:
            return OfflineScreen(unconfirmed=self.till.unconfirmed, accepting=False, action=PAY_ACTION)
        match self._stage:
            case "choose":
                return TableChooseScreen(self.table, self._index + 1, len(self._tables))
            case "loading":
                return TableLoadingScreen(self.table)
            case "bill" if self._bill is not None:
                return TableBillScreen(self.table, self._bill.amount_cents, len(self._bill.orders))
            case "lines" if self._bill is not None:
                return TableLinesScreen(self.table, self._bill.amount_cents, self._bill.lines)
            case "paid":
                return TableAlreadyPaidScreen(self.table, pending=self._pending_paid)
        return TableProblemScreen(self.table, self._problem)

    def card(self, uid: str) -> CardAnswer:
        if self._price_problems:
            return Refusal(OutOfServiceScreen(ASK_STAFF), "error", self._price_problems[0])
        if self._stage == "choose":
            return Refusal(TableChooseScreen(self.table, self._index + 1, len(self._tables)), "declined")
        if self._stage == "loading":
            return Refusal(TableLoadingScreen(self.table), "declined")
        # Read again right before the wallet: what the tap pays is the bill as the POS has it now.
        self._for_tap = True
        return Ask((self._fetch_bill(keep_screen=True, tap=True),))

    def answer(self, event: Event) -> CardAnswer | None:
        if not isinstance(event, BillRead) or event.token != self._fetch:
            return None
        for_tap, self._for_tap = self._for_tap, False
        shown = self._bill if self._stage in ("bill", "lines") else None
        self._took(event)
        if not for_tap:
            return Redraw((self._arm_refresh(),))
        bill = event.bill
        if bill is None or event.problem is not None:
            note = f"table {event.table_id}: {event.problem}: {event.detail}" if event.detail else ""
            return Refusal(TableProblemScreen(event.table_id, self._problem), "error", note)
        if event.paid is not None:
            return Refusal(
                TableAlreadyPaidScreen(event.table_id, pending=event.paid == "pending"), "declined"
            )
        if bill.amount_cents <= 0:
            return Refusal(TableProblemScreen(event.table_id, BillProblem.NOTHING_DUE), "declined")
        if shown is None or shown.key != bill.key:
            # The POS has another bill than the one the guest saw: show it, charge nothing.
            return Refusal(TableChangedScreen(event.table_id, bill.amount_cents), "declined")
        try:
            products = decompose(bill.amount_cents, self.till.settings.denominations)
        except ValueError as exc:
            note = f"table {bill.table_id}: [table] denominations cannot pay {bill.amount_cents} cents: {exc}"
            return Refusal(DeclinedScreen(DeclineReason.BAD_PRODUCT), "error", note)
        key = event.pay_key or bill.key
        self._paying = bill
        return Sale(tuple(products), key=key, bill=bill, expect_cents=bill.amount_cents, offline_ok=False)

    def button(self, name: str) -> Refusal | Redraw | None:
        if name not in BUTTONS:
            return None
        stage = self._stage
        if stage in ("bill", "lines") and name in (NEXT, PREV):
            self._stage = "lines" if name == NEXT else "bill"
            return Redraw()
        if self._fixed:
            return Redraw((self._fetch_bill(),)) if name == OK else None
        if stage == "choose" and name in (NEXT, PREV):
            self._index = (self._index + (1 if name == NEXT else -1)) % len(self._tables)
            return Redraw()
        if stage == "choose":
            return Redraw((self._fetch_bill(),))
        # ok on a bill, a problem, a table in loading; next/prev on a problem: back to choosing
        self._to_choose()
        if name in (NEXT, PREV):
            self._index = (self._index + (1 if name == NEXT else -1)) % len(self._tables)
        return Redraw()

    def timer(self, token: int) -> bool | Redraw:
        if token != self._refresh or self._stage in ("choose", "loading"):
            return False
        return Redraw((self._fetch_bill(keep_screen=True),))

    def resumed(self) -> tuple[Effect, ...]:
        if self._stage in ("bill", "lines", "problem", "paid"):
            return (self._fetch_bill(keep_screen=True),)
        return ()

    def paid(self) -> None:
        super().paid()
        if not self._fixed:
            self._to_choose()  # the next guest's table

    def declined(self) -> None:
        """The table and its bill stay chosen: the bill is what the table owes, not what the declined
        guest chose, and it is read again from the POS at every tap (a changed bill is shown, not paid);
        another guest at the table pays it with another card. Staff move on with the buttons."""

    def catalog_changed(self) -> None:
        super().catalog_changed()
        self._price_problems = self._check_prices()

    def approved_screen(
        self, amount_cents: int, balance_cents: int | None, *, confirmed: bool = True, offline: bool = False
    ) -> Screen:
        table = self._paying.table_id if self._paying is not None else self.table
        if not confirmed:
            # no word from the wallet within its deadline: never "Paid" on a guess (the device loop
            # journals it unapproved; the outbox finds out whether it was booked)
            return TableConfirmingScreen(table, amount_cents)
        close = not self.till.settings.apply_payment
        return TablePaidScreen(table, amount_cents, balance_cents, close_at_pos=close)

    def already_booked_screen(self, amount_cents: int, balance_cents: int | None) -> Screen:
        table = self._paying.table_id if self._paying is not None else self.table
        return TableAlreadyPaidScreen(table)

    def button_names(self) -> tuple[str, ...]:
        return BUTTONS

    @property
    def price_problems(self) -> tuple[str, ...]:
        """Why the denomination products cannot pay bills (wallet prices that differ from the config)."""
        return self._price_problems

    # --- the bill on screen -----------------------------------------------------------------------

    def _fetch_bill(self, *, keep_screen: bool = False, tap: bool = False) -> FetchBill:
        self._fetch = self.till.token()
        if not keep_screen:
            self._stage = "loading"
        return FetchBill(self.table, self._fetch, tap=tap)

    def _arm_refresh(self) -> StartTimer:
        self._refresh = self.till.token()
        return StartTimer(self._refresh, self.till.settings.bill_refresh_s)

    def _took(self, event: BillRead) -> None:
        """Show what the POS answered (the tap's own answer included)."""
        bill = event.bill
        if event.problem is not None or bill is None:
            self._bill, self._stage = None, "problem"
            self._problem = event.problem or BillProblem.UNREADABLE
        elif event.paid is not None:
            self._bill, self._stage, self._pending_paid = None, "paid", event.paid == "pending"
        elif bill.amount_cents <= 0:
            self._bill, self._stage, self._problem = None, "problem", BillProblem.NOTHING_DUE
        else:
            self._bill = bill
            if self._stage not in ("bill", "lines"):
                self._stage = "bill"

    def _to_choose(self) -> None:
        self._stage, self._bill = "choose", None
        self._fetch = self.till.token()  # an answer still on its way is for a table no longer chosen
        self._for_tap = False

    def _check_prices(self) -> tuple[str, ...]:
        return price_problems(self.till.settings.denominations, self.till.catalog)
