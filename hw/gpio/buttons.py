"""Product buttons through gpiozero, debounced here; and their software twin pressed by name."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from hw.gpio.base import ButtonListener
from terminal.config import GpioConfig


class Debouncer:
    """Turns raw press/release edges into presses: edges within ``bounce_s`` of the last edge are bounce.

    A press counts when the contact closes after having been quiet for ``bounce_s`` since the last
    accepted press and since the last release edge; everything else is contact chatter. A press shorter
    than ``bounce_s`` still counts (once): only its trailing chatter is dropped.
    """

    def __init__(self, bounce_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._bounce_s = bounce_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_press = -float("inf")
        self._last_release = -float("inf")

    def pressed(self) -> bool:
        """A closing edge arrived; True when it is a new press."""
        now = self._clock()
        with self._lock:
            if now - self._last_press < self._bounce_s or now - self._last_release < self._bounce_s:
                return False
            self._last_press = now
            return True

    def released(self) -> None:
        """An opening edge arrived."""
        now = self._clock()
        with self._lock:
            self._last_release = now


class GpioButtons:
    """One gpiozero Button per configured name (to GND, internal pull-up); presses go to ``listener``."""

    def __init__(self, cfg: GpioConfig, listener: ButtonListener) -> None:
        from gpiozero import Button  # imported here: only the adapter needs gpiozero

        self._listener = listener
        self.bounce_s = cfg.bounce_ms / 1000
        # Keep a reference to every device: a collected gpiozero Button frees its pin and goes silent.
        self._buttons: dict[str, Any] = {}
        self._debouncers: dict[str, Debouncer] = {}
        for name, pin in cfg.buttons.items():
            # bounce_time=None: gpiozero's pin factories debounce differently (MockPin not at all), so
            # debouncing happens in Debouncer, the same on every factory.
            button = Button(pin, pull_up=True, bounce_time=None)
            debouncer = Debouncer(self.bounce_s)
            button.when_pressed = self._on_press(name, debouncer)
            button.when_released = debouncer.released
            self._buttons[name] = button
            self._debouncers[name] = debouncer

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._buttons)

    def _on_press(self, name: str, debouncer: Debouncer) -> Callable[[], None]:
        def pressed() -> None:
            if debouncer.pressed():
                self._listener.button_pressed(name)

        return pressed

    def close(self) -> None:
        for button in self._buttons.values():
            button.close()
        self._buttons.clear()


class SoftwareButtons:
    """The twin: the same names, pressed from code (demo, console, tests) instead of by a finger."""

    def __init__(self, cfg: GpioConfig, listener: ButtonListener) -> None:
        self._listener = listener
        self._names = tuple(cfg.buttons)

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def press(self, name: str) -> None:
        if name not in self._names:
            known = ", ".join(self._names) or "none"
            raise ValueError(f"no button named {name!r}; configured buttons: {known}")
        self._listener.button_pressed(name)

    def close(self) -> None:
        pass
