"""The screens of table mode: choosing a table, its bill from the POS, and what paying it by card led to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from terminal.money import format_cents
from terminal.screens.common import Screen, ScreenText


class BillProblem(StrEnum):
    """Why a table's bill cannot be paid at the terminal now; each has its own screen."""

    NO_PARTY = "no_party"  # no open party at the table (PAR Brink ResultCode 101)
    POS_UNAVAILABLE = "pos_unavailable"  # the POS answered 1 or 3: try again later
    ACCESS_DENIED = "access_denied"  # 4 or HTTP 401/403: the terminal's POS tokens are wrong
    REFUSED = "refused"  # 2 or a SOAP Fault: the POS refuses the request (a table it does not know)
    UNREADABLE = "unreadable"  # an amount not in whole cents, a broken answer: pay at the till
    UNREACHABLE = "unreachable"  # no answer in time: try again later
    NOTHING_DUE = "nothing_due"  # the open orders add up to 0.00


@dataclass(frozen=True)
class BillLine:
    """One entry of the bill as the screen lists it (printable text from the POS; cents)."""

    description: str
    price_cents: int


# What the bill screen asks the guest to do
PAY_ACTION = "Tap card to pay"
# How staff move through the tables and the bill: the buttons' names as wired
CHOOSE_HINT = "next / prev, ok"

PROBLEM_TEXT: dict[BillProblem, str] = {
    BillProblem.NO_PARTY: "No open bill at this table",
    BillProblem.POS_UNAVAILABLE: "Till busy: try again later",
    BillProblem.ACCESS_DENIED: "Till refuses the terminal: ask staff",
    BillProblem.REFUSED: "Till refused the request: ask staff",
    BillProblem.UNREADABLE: "Bill unreadable: pay at the till",
    BillProblem.UNREACHABLE: "Till unreachable: try again later",
    BillProblem.NOTHING_DUE: "Nothing to pay",
}


@dataclass(frozen=True)
class TableChooseScreen(Screen):
    """Staff choose the table whose bill is paid next (``position`` of ``count`` configured tables)."""

    table_id: int
    position: int = 1
    count: int = 1

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        return ScreenText("Choose table", (f"Table {self.table_id}", CHOOSE_HINT))


@dataclass(frozen=True)
class TableLoadingScreen(Screen):
    """The table's bill is being read from the POS."""

    table_id: int

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        return ScreenText(f"Table {self.table_id}", ("Reading the bill…",))


@dataclass(frozen=True)
class TableBillScreen(Screen):
    """The amount due at a table, how many open orders it is, and that a tap pays it."""

    table_id: int
    amount_cents: int
    orders: int = 1

    @property
    def orders_text(self) -> str:
        return f"{self.orders} order{'s' if self.orders != 1 else ''}"

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        amount = format_cents(self.amount_cents, locale, currency)
        return ScreenText(f"Table {self.table_id}", (amount, self.orders_text, PAY_ACTION))


@dataclass(frozen=True)
class TableLinesScreen(Screen):
    """The bill's entries (staff page to it with ``next``); a panel too small for them pages through."""

    table_id: int
    amount_cents: int
    lines: tuple[BillLine, ...] = ()

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        rows = tuple(
            f"{line.description} {format_cents(line.price_cents, locale, currency)}" for line in self.lines
        )
        title = f"Table {self.table_id} {format_cents(self.amount_cents, locale, currency)}"
        return ScreenText(title, (*rows, PAY_ACTION))


@dataclass(frozen=True)
class TableProblemScreen(Screen):
    """Why the table's bill cannot be paid here now."""

    table_id: int
    problem: BillProblem

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        return ScreenText(f"Table {self.table_id}", (PROBLEM_TEXT[self.problem],))


@dataclass(frozen=True)
class TableChangedScreen(Screen):
    """The bill changed between showing it and the tap: the new amount, nothing charged."""

    table_id: int
    amount_cents: int

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        amount = format_cents(self.amount_cents, locale, currency)
        return ScreenText(
            "Bill changed", (f"Table {self.table_id}: now {amount}", "Nothing charged: tap again")
        )


@dataclass(frozen=True)
class TablePaidScreen(Screen):
    """The wallet booked the table's bill (never shown on a guess: ``TableConfirmingScreen``): the amount,
    the new balance, and (without ApplyPayment) that staff must close the table at the POS."""

    table_id: int
    amount_cents: int
    balance_cents: int | None = None
    close_at_pos: bool = True

    @property
    def note(self) -> str:
        return f"Table {self.table_id} paid" + (": close at POS" if self.close_at_pos else "")

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        lines = [format_cents(self.amount_cents, locale, currency)]
        if self.balance_cents is not None:
            lines.append(f"Balance {format_cents(self.balance_cents, locale, currency)}")
        lines.append(self.note)
        return ScreenText("Paid", tuple(lines))


@dataclass(frozen=True)
class TableConfirmingScreen(Screen):
    """The wallet did not answer the debit within its deadline: whether the bill is paid is not known
    yet, so it is not shown "Paid"; staff see the table as being confirmed in ``taptill status``."""

    table_id: int
    amount_cents: int

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        amount = format_cents(self.amount_cents, locale, currency)
        return ScreenText(
            f"Table {self.table_id}", (f"{amount}: payment being confirmed", "Staff: taptill status")
        )


@dataclass(frozen=True)
class TableAlreadyPaidScreen(Screen):
    """This bill was paid already (here, or under its key at another terminal): nothing charged.
    ``pending``: paid here, the wallet's confirmation still on its way."""

    table_id: int
    pending: bool = False

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        first = "Payment being confirmed" if self.pending else "Bill already paid"
        return ScreenText(f"Table {self.table_id}", (first, "Nothing charged"))
