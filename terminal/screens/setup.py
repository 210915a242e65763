"""The screens a person setting the terminal up sees, never a guest: approving access to an account."""

from __future__ import annotations

from dataclasses import dataclass

from terminal.screens.common import Screen, ScreenText


@dataclass(frozen=True)
class ApproveAccessScreen(Screen):
    """The account owner approves access to ``system`` at ``url`` (a QR code on the OLED, for a phone)."""

    url: str
    system: str = "ready2order"

    def text(self, locale: str = "de", currency: str = "EUR") -> ScreenText:
        return ScreenText(f"Approve {self.system}", ("Open on a phone:", self.url))
