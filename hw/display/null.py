"""The display of a terminal without one ([display] kind = "none"): shows nothing."""

from __future__ import annotations

from terminal.screens import Screen


class NullDisplay:
    """A Display that discards every screen."""

    def show(self, screen: Screen) -> None:
        pass

    def close(self) -> None:
        pass
