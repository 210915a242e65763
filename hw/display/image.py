"""[display] kind = "image": each changed frame as a numbered PNG and latest.png, via luma's dummy device."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from hw.display.frames import PAGE_SECONDS, LumaDisplay

FRAME_NAME = re.compile(r"^frame-(\d{6})\.png$")
LATEST = "latest.png"


class ImageDisplay(LumaDisplay):
    """Writes ``frame-000001.png``… into ``image_dir``, continuing after files left by a previous run."""

    name = "image"

    def __init__(
        self,
        image_dir: Path,
        *,
        width: int = 128,
        height: int = 64,
        scale: int = 1,
        keep: int = 1000,
        locale: str = "de",
        currency: str = "EUR",
        pairing_url: str | None = None,
        page_seconds: float = PAGE_SECONDS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        from luma.core.device import dummy

        super().__init__(
            dummy(width=width, height=height, mode="1"),
            locale=locale,
            currency=currency,
            pairing_url=pairing_url,
            page_seconds=page_seconds,
            clock=clock,
        )
        try:
            image_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(
                f"cannot create the screen image folder {image_dir} ({exc.strerror}); "
                "set [display] image_dir to a writable folder"
            ) from None
        self.image_dir = image_dir
        self.scale = scale
        self.keep = keep
        numbers = [int(m.group(1)) for p in image_dir.iterdir() if (m := FRAME_NAME.match(p.name))]
        self.count = max(numbers, default=0)

    def send(self, image: Image.Image) -> None:
        super().send(image)
        shown: Image.Image = self.device.image
        if self.scale != 1:
            shown = shown.resize(
                (self.width * self.scale, self.height * self.scale), Image.Resampling.NEAREST
            )
        self.count += 1
        path = self.image_dir / f"frame-{self.count:06d}.png"
        shown.save(path)
        # latest.png is replaced atomically: a viewer polling it never reads half a file
        tmp = self.image_dir / f".{LATEST}.tmp"
        shown.save(tmp, format="PNG")
        os.replace(tmp, self.image_dir / LATEST)
        old = self.image_dir / f"frame-{self.count - self.keep:06d}.png"
        old.unlink(missing_ok=True)

    def close(self) -> None:
        pass  # leave the last frame on disk, unlike a panel that is blanked
