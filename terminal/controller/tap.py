"""Tap mode (a coffee machine or bar tap): every tap pays the configured products, one relay pulse each."""

from __future__ import annotations

from terminal.controller.mode import CardAnswer, Sale, SellMode
from terminal.screens import TAP_ACTION, Screen


class TapMode(SellMode):
    """No buttons and no cart: the board shows the products, a tap pays them."""

    def idle_screen(self) -> Screen:
        return self.price_board(TAP_ACTION, self.till.settings.products)

    def card(self, uid: str) -> CardAnswer:
        goods = self.till.settings.products
        # A Partybroker ladder charges the drink's current price step; the relay still pours the drink.
        charged = tuple(self.till.charge_as.get(str(p), p) for p in goods)
        return Sale(charged, goods=goods)
