"""Prints each changed screen as a boxed block of text (the display of `taptill demo` and of a terminal)."""

from __future__ import annotations

import sys
from typing import TextIO

from hw.display.health import DisplayHealth
from terminal.screens import Screen, ScreenText


def boxed(text: ScreenText) -> str:
    """The screen as a box: the title in the top edge, one body line per row."""
    width = max([len(text.title) + 2, *(len(line) for line in text.lines), 16])
    top = f"┌─ {text.title} " + "─" * (width - len(text.title) - 1) + "┐"
    rows = [f"│ {line.ljust(width)} │" for line in text.lines]
    bottom = "└" + "─" * (width + 2) + "┘"
    return "\n".join([top, *rows, bottom])


class ConsoleDisplay:
    """A Display that writes to a text stream; an unchanged screen is not printed again."""

    def __init__(self, stream: TextIO | None = None, *, locale: str = "de", currency: str = "EUR") -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.locale = locale
        self.currency = currency
        self._last: ScreenText | None = None
        self.health = DisplayHealth("console")

    def show(self, screen: Screen) -> None:
        text = screen.text(self.locale, self.currency)
        if text == self._last:
            return
        # remembered only once written: a failed write must not keep the same screen from being retried
        self._last = None
        try:
            self.stream.write(boxed(text) + "\n")
            self.stream.flush()
        except Exception as exc:  # a closed or full output must not stop sales
            self.health.failed(exc)
            return
        self._last = text
        self.health.sent()

    @property
    def trouble(self) -> str | None:
        """One line while writes keep failing (for the service status), None while they work."""
        return self.health.trouble

    def close(self) -> None:
        try:
            self.stream.flush()
        except Exception as exc:
            self.health.failed(exc)
