"""Shows every screen on several displays at once (the configured display plus a GIF recording)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hw.display.base import Display
from terminal.screens import Screen


class TeeDisplay:
    """A Display that forwards to each of ``displays`` in order; refresh() reaches those that page.

    One display that raises does not keep the screen from the others: each gets it, then the
    first error is raised for the caller to log.
    """

    def __init__(self, displays: Sequence[Display]) -> None:
        self.displays = tuple(displays)

    def show(self, screen: Screen) -> None:
        self._each(lambda display: display.show(screen))

    def refresh(self) -> None:
        def refresh(display: Display) -> None:
            method = getattr(display, "refresh", None)
            if method is not None:
                method()

        self._each(refresh)

    @property
    def trouble(self) -> str | None:
        """Every failing display's trouble line, joined; None while every display works."""
        lines = [line for display in self.displays if (line := getattr(display, "trouble", None))]
        return "; ".join(lines) if lines else None

    def close(self) -> None:
        self._each(lambda display: display.close())  # a GIF must still be written after a panel fails

    def _each(self, call: Callable[[Display], None]) -> None:
        errors: list[Exception] = []
        for display in self.displays:
            try:
                call(display)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
