"""Product buttons through gpiozero, filtered here for bounce and noise; and their software twin."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from hw.gpio.base import ButtonListener
from terminal.config import GpioConfig

# A hold check's timer may wake a hair before min_press_s by the clock (rounding, clock granularity); a
# closure this much shorter still counts, so a held button never waits for its release to be counted.
SLACK_S = 0.001


class PressFilter:
    """Turns raw close/open edges of one button into presses a finger made.

    A press counts once the contact has stayed closed for ``min_press_s`` without an edge (a spike on a
    long wire is shorter than that); it counts while still held, or at the opening edge when the check
    while held came late. Contact chatter is not a new press: a closing edge within ``bounce_s`` of the
    last opening edge continues the press before it and keeps its start, so neither bounce on release nor
    a glitch during a long hold counts twice, and a glitch mid-hold does not restart the hold either (a
    45 ms press with a 1 ms gap in it is one 45 ms press). Thread-safe: edges arrive on gpiozero's
    thread, hold checks on a timer's.
    """

    def __init__(
        self, min_press_s: float, bounce_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.min_press_s = min_press_s
        self._bounce_s = bounce_s
        self._clock = clock
        self._lock = threading.Lock()
        self._edge = 0  # counts edges: a hold check is for the closing edge it was started by
        self._closed = False
        self._closed_at = 0.0
        self._last_open = -float("inf")
        self._counted = False  # this closure (chatter included) already gave its press

    def closed(self) -> int:
        """A closing edge arrived; returns its number, for ``held``."""
        now = self._clock()
        with self._lock:
            self._edge += 1
            if now - self._last_open >= self._bounce_s:
                # quiet long enough since the last release: a new press, which may count, starts now
                self._counted, self._closed_at = False, now
            self._closed = True
            return self._edge

    def hold_left_s(self) -> float:
        """Seconds the current closure must still last to make a press (0 when it already has)."""
        with self._lock:
            return max(0.0, self.min_press_s - (self._clock() - self._closed_at))

    def held(self, edge: int) -> bool:
        """The hold check for closing edge ``edge``; True when it makes a press."""
        with self._lock:
            if edge != self._edge or not self._closed:
                return False  # an edge came since: the contact did not stay closed
            return self._count(self._clock())

    def opened(self) -> bool:
        """An opening edge arrived; True when the closure it ends was long enough and not counted yet."""
        now = self._clock()
        with self._lock:
            press = self._closed and self._count(now)
            self._edge += 1
            self._closed, self._last_open = False, now
            return press

    def _count(self, now: float) -> bool:
        if self._counted or now - self._closed_at < self.min_press_s - SLACK_S:
            return False
        self._counted = True
        return True


class GpioButtons:
    """One gpiozero Button per configured name (to GND, internal pull-up); presses go to ``listener``.

    ``clock`` (monotonic seconds) times the edges; tests pass their own to place edges exactly.
    """

    def __init__(
        self, cfg: GpioConfig, listener: ButtonListener, clock: Callable[[], float] = time.monotonic
    ) -> None:
        from gpiozero import Button  # imported here: only the adapter needs gpiozero

        self._listener = listener
        self.bounce_s = cfg.bounce_ms / 1000
        self.min_press_s = cfg.min_press_ms / 1000
        self._closing = False
        self._timers: set[threading.Timer] = set()
        self._timers_lock = threading.Lock()
        # Keep a reference to every device: a collected gpiozero Button frees its pin and goes silent.
        self._buttons: dict[str, Any] = {}
        for name, pin in cfg.buttons.items():
            # bounce_time=None: gpiozero's pin factories debounce differently (MockPin not at all), and
            # debounce is not a minimum duration; PressFilter does both, the same on every factory.
            button = Button(pin, pull_up=True, bounce_time=None)
            presses = PressFilter(self.min_press_s, self.bounce_s, clock)
            button.when_pressed = self._on_close(name, presses)
            button.when_released = self._on_open(name, presses)
            self._buttons[name] = button

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._buttons)

    def _on_close(self, name: str, presses: PressFilter) -> Callable[[], None]:
        def closed() -> None:
            edge = presses.closed()
            if self.min_press_s <= 0:
                self._report(name, presses.held(edge))
                return

            def check_hold() -> None:
                with self._timers_lock:
                    self._timers.discard(timer)
                self._report(name, presses.held(edge))

            # A timer per closing edge: edges are few (a finger, some chatter), and an edge that comes
            # before it fires makes its check a no-op (PressFilter.held compares edge numbers). It waits
            # only what the press still lacks: chatter mid-hold does not delay the count.
            timer = threading.Timer(presses.hold_left_s(), check_hold)
            timer.daemon = True
            with self._timers_lock:
                if self._closing:
                    return
                self._timers.add(timer)
            timer.start()

        return closed

    def _on_open(self, name: str, presses: PressFilter) -> Callable[[], None]:
        def opened() -> None:
            self._report(name, presses.opened())

        return opened

    def _report(self, name: str, press: bool) -> None:
        if press and not self._closing:
            self._listener.button_pressed(name)

    def close(self) -> None:
        with self._timers_lock:
            self._closing = True
            timers, self._timers = self._timers, set()
        for timer in timers:
            timer.cancel()
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
