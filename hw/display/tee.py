"""Shows every screen on several displays at once (the configured display plus a GIF recording)."""

from __future__ import annotations

from collections.abc import Sequence

from hw.display.base import Display
from terminal.screens import Screen


class TeeDisplay:
    """A Display that forwards to each of ``displays`` in order; refresh() reaches those that page."""

    def __init__(self, displays: Sequence[Display]) -> None:
        self.displays = tuple(displays)

    def show(self, screen: Screen) -> None:
        for display in self.displays:
            display.show(screen)

    def refresh(self) -> None:
        for display in self.displays:
            refresh = getattr(display, "refresh", None)
            if refresh is not None:
                refresh()

    def close(self) -> None:
        errors: list[Exception] = []
        for display in self.displays:
            try:
                display.close()
            except Exception as exc:  # close the others first: a GIF must still be written
                errors.append(exc)
        if errors:
            raise errors[0]
