"""The reader interface every card reader adapter (sim, pcsc, nfcpy) implements."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class WaitingClient:
    """Who waits for the answer to a tap or a press (a client of the sim socket): a tap taken for a client
    that gave up books a sale whose client said it failed, so it is taken only while the client waits."""

    deadline: float | None  # time.monotonic() by which the client wants its answer; None: none given
    hung_up: Callable[[], bool]  # True once the client closed its end

    def gone(self, need_s: float = 0.0) -> str | None:
        """Why an answer ``need_s`` seconds from now would reach no one (one line); None: it would."""
        if self.hung_up():
            return "the client hung up"
        if self.deadline is not None and time.monotonic() + need_s > self.deadline:
            return "the client's deadline has passed" if need_s <= 0 else "the client's deadline is too near"
        return None

    def left_s(self) -> float | None:
        """Seconds until the client's deadline (None: it gave none)."""
        return None if self.deadline is None else self.deadline - time.monotonic()


class CardListener(Protocol):
    """Receives reader events; called from the reader's own thread, must not block."""

    def card_present(self, uid: str, *, already_present: bool = False) -> None:
        """A card arrived; ``uid`` is already normalised (uppercase hex, no separators).

        ``already_present`` is True for a card that was in the field when the reader (re)started (pcscd
        restarted, the reader came back, the device was opened again): it was not tapped, so the
        terminal does not take it for a tap until it has been taken away.
        """

    def card_removed(self) -> None:
        """The card left the field."""

    def reader_status(self, online: bool, detail: str) -> None:
        """The reader went away (``online`` False) or came back."""


class Reader(Protocol):
    """A card reader: started once with a listener, stopped on shutdown within a second."""

    def start(self, listener: CardListener) -> None: ...

    def stop(self) -> None: ...
