"""Records the screens as an animated GIF through luma's gifanim emulator (``taptill demo --gif PATH``)."""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from hw.display.frames import PAGE_SECONDS, LumaDisplay

TICK_S = 0.25  # time resolution of the GIF: each recorded frame lasts a whole number of ticks
MAX_HOLD_S = 8.0  # a long pause in the demo shows as at most this long
LAST_HOLD_S = 2.0


class GifRecorder(LumaDisplay):
    """A Display that collects every changed frame and writes ``gif_path`` on close().

    Frames keep their real duration (rounded to TICK_S): gifanim gives every frame the same
    duration, so a frame that stayed up longer is given again, and Pillow merges the repeats
    into one GIF frame with the summed duration.
    """

    name = "GIF recording"

    def __init__(
        self,
        gif_path: Path,
        *,
        width: int = 128,
        height: int = 64,
        scale: int = 2,
        locale: str = "de",
        currency: str = "EUR",
        pairing_url: str | None = None,
        page_seconds: float = PAGE_SECONDS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame greets on stdout otherwise
        from luma.emulator.device import gifanim

        device = gifanim(
            width=width,
            height=height,
            mode="1",
            transform="identity",
            scale=scale,
            filename=str(gif_path),
            duration=TICK_S,
            loop=0,
        )
        # max_frames would sys.exit(); and the atexit writer would write a second time, possibly into
        # a folder that is gone by then: we write once, in close()
        atexit.unregister(device.write_animation)
        super().__init__(
            device,
            locale=locale,
            currency=currency,
            pairing_url=pairing_url,
            page_seconds=page_seconds,
            clock=clock,
        )
        self.gif_path = gif_path
        self._previous: Image.Image | None = None
        self._previous_at = 0.0
        self._closed = False

    def send(self, image: Image.Image) -> None:
        now = self._clock()
        self._hold_previous(now - self._previous_at)
        # the hold is recorded even if this frame fails: a retry must not record it a second time
        self._previous_at = now
        super().send(image)
        self._previous = image

    def _hold_previous(self, seconds: float) -> None:
        if self._previous is None:
            return
        ticks = max(1, round(min(seconds, MAX_HOLD_S) / TICK_S))
        for _ in range(ticks - 1):
            self.device.display(self._previous)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._hold_previous(max(LAST_HOLD_S, self._clock() - self._previous_at))
            try:
                self.device.write_animation()
            except OSError as exc:
                raise OSError(
                    f"cannot write the GIF {self.gif_path} ({exc.strerror}); "
                    "pass --gif a path in a writable folder"
                ) from None
