"""Select mode: buttons fill a cart that the next tap pays; a tap with an empty cart shows the balance."""

from __future__ import annotations

from terminal.controller.mode import BalanceCheck, CardAnswer, Redraw, Refusal, Sale, SellMode, Till
from terminal.effects import StartTimer
from terminal.screens import Screen
from terminal.screens.select import SELECT_ACTION, CartLine, CartScreen


class SelectMode(SellMode):
    """The cart is emptied by the cancel button, by the tap that takes it, paid or not (a declined guest
    chooses again: the next card pays only what its guest chose; ``SellMode.declined``), or
    ``cart_timeout_s`` after the last press (the guest walked away)."""

    def __init__(self, till: Till) -> None:
        super().__init__(till)
        self._cart_token = 0

    def idle_screen(self) -> Screen:
        if self.cart:
            return self._cart_screen()
        return self.price_board(SELECT_ACTION, self.till.settings.buttons.values())

    def card(self, uid: str) -> CardAnswer:
        if not self.cart:
            return BalanceCheck()
        return Sale(tuple(self.cart), goods=tuple(self.cart))

    def button(self, name: str) -> Refusal | Redraw | None:
        if (refusal := self.unavailable(name) or self.out_of_stock(name)) is not None:
            return refusal
        if not self.pick(name):
            return None
        self._cart_token = self.till.token()
        return Redraw((StartTimer(self._cart_token, self.till.settings.cart_timeout_s),))

    def timer(self, token: int) -> bool:
        if token == self._cart_token and self.cart:
            self.cart.clear()
            return True
        return False

    def _cart_screen(self) -> CartScreen:
        counts: dict[str, int] = {}
        for pid in self.cart:
            counts[str(pid)] = counts.get(str(pid), 0) + 1
        items = []
        for key, qty in counts.items():
            p = self.till.product(key)
            if p is not None:
                items.append(CartLine(p.name, qty, p.price_cents))
        return CartScreen(tuple(items), cancel_button=self.till.settings.cancel_button)
