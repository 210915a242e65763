"""The display interface every display adapter (console, image, oled, none) implements."""

from __future__ import annotations

from typing import Protocol

from terminal.screens import Screen


class Display(Protocol):
    """Shows screens; called from the device loop, must return quickly."""

    def show(self, screen: Screen) -> None: ...

    def close(self) -> None: ...


class DisplayNotFound(Exception):
    """The configured panel cannot be reached; the message says where it was looked for and what to check.

    Here, not beside the OLED adapter that raises it: ``taptill run`` catches it whatever the display,
    and importing the adapter would load Pillow and qrcode on a terminal that draws nothing.
    """
