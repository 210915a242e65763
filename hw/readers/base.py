"""The reader interface every card reader adapter (sim, pcsc, nfcpy) implements."""

from __future__ import annotations

from typing import Protocol


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
