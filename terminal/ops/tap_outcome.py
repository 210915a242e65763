"""Says in one line what the terminal decided for a tap or a button press (``taptill tap`` and
``taptill press`` print it), from the effects."""

from __future__ import annotations

from collections.abc import Sequence

from terminal.effects import Effect, RecordDecline
from terminal.journal import OFFLINE_REASON
from terminal.model import DeclineReason
from terminal.money import format_cents
from terminal.screens import (
    ApprovedScreen,
    BalanceScreen,
    CartScreen,
    CreditScreen,
    DeclinedScreen,
    KioskLockedScreen,
    KioskScreen,
    NotRegisteredScreen,
    OutOfServiceScreen,
    PinScreen,
    TableAlreadyPaidScreen,
    TableChangedScreen,
    TableChooseScreen,
    TableConfirmingScreen,
    TableLoadingScreen,
    TablePaidScreen,
    TableProblemScreen,
)
from terminal.screens.table import PROBLEM_TEXT
from terminal.screens.verdict import last_screen

# A tap's decision is awaited the tap budget and this long (seconds): taps queued ahead, a loaded Pi.
DECISION_MARGIN_S = 5.0
# The first word of a decision line; `taptill tap` exits 0 for these and 1 for any other.
GOOD_WORDS = ("approved", "balance", "operator")

# An approved sale not booked yet while the server is up: behind an earlier sale of the card that is
# still being settled, or sent with its answer still on the way. Not "offline": the journal says not.
QUEUED = "; queued behind an earlier sale or an answer on its way: booked shortly"

REASONS: dict[DeclineReason, str] = {
    DeclineReason.UNKNOWN_CARD: "card not registered",
    DeclineReason.INSUFFICIENT_BALANCE: "insufficient balance",
    DeclineReason.PERMISSION: "the wallet server does not allow this terminal to book this",
    DeclineReason.SERVER_TROUBLE: "the wallet server answered with an error (see the terminal's log)",
    DeclineReason.OFFLINE: "the wallet server cannot be reached",
    DeclineReason.OFFLINE_LIMIT: "offline limit reached",
    DeclineReason.DENIED_CARD: "card blocked",
    DeclineReason.BAD_PRODUCT: "a product cannot be sold (see taptill doctor)",
    DeclineReason.STORAGE: "the journal cannot be read or written",
    DeclineReason.NOTHING_SELECTED: "nothing selected",
    DeclineReason.KIOSK_LOCKED: "the kiosk is locked: an operator card unlocks it",
    DeclineReason.WRONG_PIN: "wrong operator PIN",
    DeclineReason.PIN_LOCKED_OUT: "too many wrong PINs: this operator card waits [topup] pin_lockout_s",
    DeclineReason.CREDIT_LIMIT: "the operator's top-up cap is reached ([topup] max_credit_per_*)",
    DeclineReason.SOLD_OUT: "sold out: fewer servings in stock than the tap pours (taptill stock)",
    DeclineReason.EARLIER_PENDING: "earlier payment still being confirmed, try again in a moment",
}


def decision_line(effects: Sequence[Effect], *, locale: str, currency: str, ignored: str) -> str:
    """One line for a tap's decision, from the effects its events produced, in order.

    ``approved …``, ``balance …`` (an empty cart: nothing charged), ``operator: …`` (a kiosk operator
    card), ``declined: why`` or ``declined offline: why``; ``busy: <ignored>`` when the terminal took no
    tap at all (it showed nothing).
    """

    def money(cents: int) -> str:
        return format_cents(cents, locale, currency)

    declines = [e for e in effects if isinstance(e, RecordDecline)]
    screen = last_screen(effects)
    if screen is None:
        return f"busy: {ignored}"
    match screen:
        case ApprovedScreen(amount, balance, confirmed, offline):
            line = f"approved {money(amount)}"
            if balance is not None:
                line += f", balance {money(balance)}" + ("" if confirmed else " (estimated)")
            if confirmed:
                return line
            return line + ("; offline: booked when the server is back" if offline else QUEUED)
        case TablePaidScreen(table, amount, balance, close_at_pos):
            line = f"approved {money(amount)}: table {table} paid"
            if balance is not None:
                line += f", balance {money(balance)}"
            return line + ("; close the table at the POS" if close_at_pos else "")
        case TableConfirmingScreen(table, amount):
            return (
                f"pending: table {table}'s payment of {money(amount)} is being confirmed by the wallet "
                "(no answer in time); staff: taptill status"
            )
        case TableAlreadyPaidScreen(table, pending):
            state = "being confirmed" if pending else "already paid"
            return f"declined: table {table}'s bill is {state}; nothing charged"
        case TableChangedScreen(table, amount):
            return f"declined: table {table}'s bill changed to {money(amount)}; nothing charged, tap again"
        case TableProblemScreen(table, problem):
            return f"declined: table {table}: {PROBLEM_TEXT[problem].lower()}"
        case TableChooseScreen() | TableLoadingScreen():
            return "declined: no table's bill on screen (choose a table: next, prev, ok)"
        case CreditScreen(amount, balance):
            line = f"approved: credited {money(amount)}"
            return line + (f", balance {money(balance)}" if balance is not None else "")
        case BalanceScreen(balance):
            return f"balance {money(balance)}: nothing charged (the cart is empty)"
        case KioskScreen():
            return "operator: kiosk unlocked"
        case KioskLockedScreen():
            return "operator: kiosk locked"
        case PinScreen():
            return "operator: enter the PIN with the buttons"
        case NotRegisteredScreen(_, url):
            return "declined: card not registered" + (f" (pair it at {url})" if url else "")
        case OutOfServiceScreen(message):
            return f"declined: out of service ({message})"
        case DeclinedScreen(reason, balance):
            record = declines[-1] if declines else None
            why = REASONS.get(reason, str(reason))
            if reason is DeclineReason.INSUFFICIENT_BALANCE and record is not None:
                has = f", has {money(balance)}" if balance is not None else ""
                why += f" (needs {money(-record.amount_cents)}{has})"
            if record is not None and record.offline:
                note = str(record.reason)
                detail = note.removeprefix(OFFLINE_REASON) if note.startswith(OFFLINE_REASON) else why
                if reason is DeclineReason.INSUFFICIENT_BALANCE:
                    detail = why
                elif detail == "policy declines":
                    detail = 'the wallet server cannot be reached and [offline] mode = "decline"'
                return f"declined offline: {detail}"
            return f"declined: {why}"
    return f"declined: {type(screen).__name__}"


def press_line(effects: Sequence[Effect], button: str, *, locale: str, currency: str) -> str:
    """One line for a button press, from the effects it produced: ``declined: why`` when the terminal
    refused it (a sold-out product, a wrong PIN, a product the server does not offer: the same words as a
    tap's decline), else ``ok: …`` (the cart and its total in select mode). ``taptill press`` exits 1 for
    a decline, as ``taptill tap`` does."""
    screen = last_screen(effects)
    if screen is None:
        return f"ok: {button} pressed"
    if isinstance(screen, DeclinedScreen):
        return decision_line(effects, locale=locale, currency=currency, ignored="")
    if isinstance(screen, CartScreen):
        items = sum(i.quantity for i in screen.items)
        total = format_cents(screen.total_cents, locale, currency)
        return f"ok: {button} pressed, cart {items} item(s), total {total}"
    return f"ok: {button} pressed"
