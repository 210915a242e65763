"""The display interface every display adapter (console, image, oled, none) implements."""

from __future__ import annotations

from typing import Protocol

from terminal.screens import Screen


class Display(Protocol):
    """Shows screens; called from the device loop, must return quickly."""

    def show(self, screen: Screen) -> None: ...

    def close(self) -> None: ...
