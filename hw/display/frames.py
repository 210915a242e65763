"""Shows screens on a luma device (panel, dummy or emulator), sending a frame only when its pixels change."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from hw.display.health import DisplayHealth
from hw.display.render import layout_for, render
from terminal.screens import Screen

PAGE_SECONDS = 3.0


class LumaDisplay:
    """A Display on any luma device; call ``refresh()`` about once a second so long price boards page.

    A frame that fails to send (an I2C error part-way) is logged, never raised: sales go on, and
    every later show or refresh sends the whole current frame again until one gets through.
    """

    name = "luma"  # in log lines about failed frames

    def __init__(
        self,
        device: Any,
        *,
        locale: str = "de",
        currency: str = "EUR",
        pairing_url: str | None = None,
        page_seconds: float = PAGE_SECONDS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.device = device
        self.width: int = device.width
        self.height: int = device.height
        layout_for(self.width, self.height)  # fail now, not at the first screen, on an unsupported size
        self.locale = locale
        self.currency = currency
        self.pairing_url = pairing_url
        self.page_seconds = page_seconds
        self.frames_sent = 0
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._screen: Screen | None = None
        self._shown_at = 0.0
        self._last: bytes | None = None  # the frame the device holds, None when unknown
        self.health = DisplayHealth(self.name, clock=self._clock)

    def show(self, screen: Screen) -> None:
        with self._lock:
            if screen != self._screen:
                self._screen = screen
                self._shown_at = self._clock()  # a new screen starts on its first page
            self._draw()

    def refresh(self) -> None:
        """Redraw the current screen at the current time: turns the pages of a long price board."""
        with self._lock:
            if self._screen is not None:
                self._draw()

    def frame(self) -> Image.Image | None:
        """The image of the current screen at the current time (what the panel shows)."""
        if self._screen is None:
            return None
        page = int((self._clock() - self._shown_at) // self.page_seconds)
        return render(
            self._screen,
            self.width,
            self.height,
            locale=self.locale,
            currency=self.currency,
            page=page,
            pairing_url=self.pairing_url,
        )

    def _draw(self) -> None:
        image = self.frame()
        if image is None:
            return
        data = image.tobytes()
        if data == self._last:
            return
        # Forgotten before sending: a send that fails part-way leaves part of this frame over part of
        # the last one, so only a complete send may say what the device shows (else the same screen
        # shown again would be skipped and the torn frame would stay).
        self._last = None
        try:
            self.send(image)
        except Exception as exc:  # a loose panel must not stop sales; the next draw retries in full
            self.health.failed(exc)
            return
        self._last = data
        self.frames_sent += 1
        self.health.sent()

    @property
    def trouble(self) -> str | None:
        """One line while frames keep failing (for the service status), None while they arrive."""
        return self.health.trouble

    def send(self, image: Image.Image) -> None:
        """Put one changed frame on the device; adapters that also write files extend this.

        Raises whatever the device raises (OSError, luma's errors); the caller counts and logs it."""
        self.device.display(image)

    def close(self) -> None:
        """Blank the panel and release the bus; a panel that fails now is logged, not raised."""
        with self._lock:
            try:
                self.device.cleanup()
            except Exception as exc:  # stopping must go on: the journal still has to close cleanly
                self.health.failed(exc)
