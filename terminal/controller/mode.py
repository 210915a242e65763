"""What a way to sell is to the core: the hooks the tap-and-decide core calls, and what they may answer.

A mode decides what the idle screen shows, what a new tap pays, and what buttons and its own timers
do; the core owns everything else (the re-tap guard, the lookup, the offline policy, the charge, the
result screens and their timers). A new mode is one more module with a ``SellMode`` subclass, named in
``modes.py``; it needs no change to the core or to the other modes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import ClassVar, Protocol

from hw.gpio.base import Signal
from terminal.controller.settings import ControllerSettings
from terminal.effects import Effect
from terminal.events import Event, TableBill
from terminal.model import DeclineReason, Product, ProductId
from terminal.screens import ApprovedScreen, DeclinedScreen, IdleScreen, OfflineScreen, PriceLine, Screen


class Till(Protocol):
    """What a mode may read of the core (it never changes the core's state)."""

    @property
    def settings(self) -> ControllerSettings: ...
    @property
    def catalog(self) -> tuple[Product, ...]: ...
    @property
    def prices(self) -> tuple[PriceLine, ...] | None: ...  # the live board (Partybroker), if any
    @property
    def prices_stale(self) -> bool: ...
    @property
    def server_online(self) -> bool: ...
    @property
    def unconfirmed(self) -> int: ...
    @property
    def charge_as(self) -> dict[str, ProductId]: ...  # Partybroker ladder: the step charged right now
    @property
    def stock_left(self) -> Mapping[str, int]: ...  # whole servings left of what is sold while it lasts
    @property
    def sold_out(self) -> frozenset[str]: ...  # wallet products the stock ledger has none of (not sold)
    @property
    def low_stock(self) -> frozenset[str]: ...  # wallet products running low (a mark for staff)

    def product(self, pid: ProductId) -> Product | None:
        """The catalog's product with this id, or None."""
        ...

    def token(self) -> int:
        """A fresh timer token, unique across the core and every mode."""
        ...


@dataclass(frozen=True)
class Sale:
    """A tap pays these products (the core prices them and refuses one it cannot sell)."""

    products: tuple[ProductId, ...]  # what the wallet books (a Partybroker ladder step, not its drink)
    goods: tuple[ProductId, ...] = ()  # what the relays release once it is paid
    operator: str | None = None  # the operator (name) responsible for a credit, journaled and sent with it
    key: str | None = None  # the idempotency key, when the mode derives it (a table bill); None: fresh
    bill: TableBill | None = None  # the table bill it pays, journaled in the sale's own transaction
    # The amount (cents, positive for a debit) the guest was shown: the products' wallet prices must add
    # up to exactly this, or the tap is refused and nothing is charged.
    expect_cents: int | None = None
    offline_ok: bool = True  # False: never sold while the wallet server cannot be asked


@dataclass(frozen=True)
class Ask:
    """The mode must ask something before it can say what the tap pays (a table's bill, read again):
    the core shows "Processing", carries out ``effects`` and hands the events they produce to
    ``SellMode.answer``, whose answer then stands for the tap's."""

    effects: tuple[Effect, ...]


@dataclass(frozen=True)
class BalanceCheck:
    """A tap shows the wallet's balance and charges nothing (nothing chosen yet)."""


@dataclass(frozen=True)
class Refusal:
    """The tap or press is turned down before any lookup: shown as a result, with this beep."""

    screen: Screen
    beep: Signal
    note: str = ""  # a line for the log (what staff must fix), if the refusal has one
    # What the mode needs besides, carried out before the refusal is shown: a journal record (which must
    # be durable before anyone sees the answer), a timer of its own.
    effects: tuple[Effect, ...] = ()


@dataclass(frozen=True)
class Redraw:
    """The mode's state changed (a cart, a lock): show its idle screen, then these effects."""

    effects: tuple[Effect, ...] = ()


CardAnswer = Sale | BalanceCheck | Refusal | Redraw | Ask


class SellMode:
    """One way to sell. The core calls ``start`` once when the terminal starts, ``idle_screen`` whenever
    it is ready for a tap, ``card`` for each new tap it takes (after its own guards), ``button`` while no
    tap is under way, ``timer`` for a timer token it did not start, ``paid`` once a sale is journaled,
    ``declined`` once a tap that was to pay a ``Sale`` ends with none journaled, ``catalog_changed``
    after new prices, ``answer`` for an event the core does not know (the answer to an effect the mode
    asked for), and ``resumed`` when a result screen gives way to the idle screen."""

    credits: ClassVar[bool] = False  # sells credits (negative prices, a top-up) instead of debits

    def __init__(self, till: Till) -> None:
        self.till = till
        # What the guest or operator chose for the next tap; stays empty where a tap pays fixed products.
        self.cart: list[ProductId] = []
        self.operator: str | None = None  # the operator (name) whose card unlocked the terminal, if any

    def start(self) -> tuple[Effect, ...]:
        """What the mode carries on from before a restart (the settings hold it): timers of its own."""
        return ()

    def idle_screen(self) -> Screen:
        raise NotImplementedError

    def card(self, uid: str) -> CardAnswer:
        """What the tap of card ``uid`` (normalised) does."""
        raise NotImplementedError

    def button(self, name: str) -> Refusal | Redraw | None:
        """A press of button ``name``; None: this mode does not react to it."""
        return None

    def timer(self, token: int) -> bool | Redraw:
        """A timer fired; True if it was this mode's and changed what the idle screen shows (a Redraw:
        and these effects follow, while no tap is under way)."""
        return False

    def answer(self, event: Event) -> CardAnswer | None:
        """An event the core does not handle itself: the answer to an effect this mode asked for. While
        the core waits on an ``Ask`` of a tap, the answer stands for that tap's; otherwise only a Redraw
        or a Refusal is carried out. None: not this mode's."""
        return None

    def resumed(self) -> tuple[Effect, ...]:
        """The result screen of a tap is over and the idle screen is back: effects the mode wants then."""
        return ()

    def button_names(self) -> tuple[str, ...]:
        """The buttons this mode reacts to, by their configured names."""
        s = self.till.settings
        return (*s.buttons, *([s.cancel_button] if s.cancel_button else []))

    def approved_screen(
        self, amount_cents: int, balance_cents: int | None, *, confirmed: bool = True, offline: bool = False
    ) -> Screen:
        """What a debit that went through shows (``amount_cents`` positive)."""
        return ApprovedScreen(amount_cents, balance_cents, confirmed=confirmed, offline=offline)

    def already_booked_screen(self, amount_cents: int, balance_cents: int | None) -> Screen:
        """What a debit shows when the server had booked the mode's key already (someone else paid)."""
        return ApprovedScreen(amount_cents, balance_cents)

    def paid(self) -> None:
        """The tap's sale is journaled (booked or queued): what was chosen for it is spent."""
        self.cart.clear()

    def declined(self) -> None:
        """The tap that was to pay a ``Sale`` ended with nothing journaled as sold: declined online or
        offline, refused by the server, not journaled, or refused before any lookup (sold out).

        What a guest chose was that guest's: it is emptied, so the next card never pays for it (in the
        field a declined guest's cart was charged to the next guest with their own). A mode whose choice
        is not the tapping guest's (an operator's amount, a table's bill) keeps it and says why.
        """
        self.cart.clear()

    def catalog_changed(self) -> None:
        # A chosen product the server no longer lists could be neither shown nor paid: the cart keeps
        # only what the screen can show, so what the guest sees is what a tap pays.
        self.cart = [pid for pid in self.cart if self.sells(pid)]

    def sells(self, pid: ProductId) -> bool:
        """Only credits (negative prices) where the mode credits, only debits elsewhere: a misconfigured
        button must never turn a "credit" into a debit or the other way round."""
        product = self.till.product(pid)
        if product is None:
            return False
        return product.price_cents < 0 if self.credits else product.price_cents >= 0

    def unavailable(self, name: str) -> Refusal | None:
        """A refusal when button ``name`` names a product this mode cannot sell now (the server dropped
        it, or never offered it as this mode's kind): the guest sees why, staff read what to fix; a
        press is never silently ignored. None for the cancel button and a button that can sell."""
        s = self.till.settings
        if name == s.cancel_button or name not in s.buttons or self.sells(s.buttons[name]):
            return None
        pid = s.buttons[name]
        kind = "credit product" if self.credits else "product for sale"
        note = (
            f"button {name!r} pressed: [{s.mode}] buttons maps it to {pid!r}, which the wallet server "
            f"does not offer as a {kind} now; fix the button or the server's product list"
        )
        return Refusal(DeclinedScreen(DeclineReason.BAD_PRODUCT), "error", note)

    def pick(self, name: str) -> bool:
        """Button ``name`` empties the cart (the cancel button) or adds its product; False: neither."""
        s = self.till.settings
        if name == s.cancel_button:
            self.cart.clear()
        elif name in s.buttons and self.sells(s.buttons[name]):
            self.cart.append(s.buttons[name])
        else:
            return False
        return True

    def price_board(self, action: str, shown: Iterable[ProductId]) -> Screen:
        """The idle board (or the offline screen) asking the guest to ``action``: the live prices when
        there are any, else the catalog's prices of ``shown``."""
        till = self.till
        prices = self._stock_marks(till.prices if till.prices is not None else self._catalog_prices(shown))
        if not till.server_online:
            accepting = till.settings.offline.mode == "accept"
            return OfflineScreen(
                unconfirmed=till.unconfirmed, accepting=accepting, prices=prices, action=action
            )
        return IdleScreen(prices=prices, title=action, stale=till.prices_stale)

    def out_of_stock(self, name: str) -> Refusal | None:
        """A refusal when button ``name`` would add a serving more of a product than the stock ledger
        has left (counting those in the cart already)."""
        s = self.till.settings
        pid = s.buttons.get(name)
        left = None if pid is None else self.till.stock_left.get(str(pid))
        if left is None:
            return None
        in_cart = sum(1 for p in self.cart if str(p) == str(pid))
        if in_cart < left:
            return None
        note = (
            f"button {name!r} pressed: {pid!r} has {left} serving(s) left (taptill stock), {in_cart} in "
            "the cart; not added"
        )
        return Refusal(DeclinedScreen(DeclineReason.SOLD_OUT), "declined", note)

    def _stock_marks(self, lines: tuple[PriceLine, ...]) -> tuple[PriceLine, ...]:
        """The board's lines with what the stock ledger says of each: sold out, or low (for staff)."""
        sold_out, low = self.till.sold_out, self.till.low_stock
        if not sold_out and not low:
            return lines
        marked = (replace(line, sold_out=line.product in sold_out, low=line.product in low) for line in lines)
        return tuple(marked)

    def _catalog_prices(self, shown: Iterable[ProductId]) -> tuple[PriceLine, ...]:
        lines = []
        for pid in dict.fromkeys(shown):
            p = self.till.product(pid)
            if p is not None:
                lines.append(PriceLine(p.name, p.price_cents, product=str(pid)))
        return tuple(lines)
