"""The output interface (relay, buzzer, LEDs) and the button listener of the GPIO adapters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from terminal.model import ProductId

Signal = Literal["approved", "declined", "error"]


class Outputs(Protocol):
    """What the terminal switches: called only after a sale is journaled and approved."""

    def dispense(self, products: Sequence[ProductId]) -> int:
        """Pulse each product's relay once per product, in order, after any pulses already queued;
        returns without waiting.

        Returns a ticket for ``dispensed``: -1 when the outputs are released and nothing will pulse.
        """

    def dispensed(self, ticket: int) -> bool:
        """Whether every pulse up to ``ticket`` (from ``dispense``) has been given in full."""

    def when_dispensed(self, ticket: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, from any thread, when ``dispensed(ticket)`` holds or the outputs are
        released (then it stays False); at once if either is already so."""

    def signal(self, kind: Signal) -> None:
        """Play the buzzer pattern / LED for an outcome."""

    def set_online(self, online: bool) -> None:
        """Status LED: the wallet server is reachable."""

    def release(self) -> None:
        """Switch every output off (service stop, crash handler)."""


class ButtonListener(Protocol):
    """Receives button presses by their configured name (already debounced)."""

    def button_pressed(self, name: str) -> None: ...
