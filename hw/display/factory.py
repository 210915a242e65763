"""Chooses the display adapter ([display] kind: console, image, oled, none) for a terminal's config."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from hw.display.base import Display
from terminal.config import DisplayConfig


def make_display(
    cfg: DisplayConfig,
    *,
    locale: str,
    currency: str,
    state_dir: Path,
    pairing_url: str | None,
    gif_path: Path | None = None,
    stream: TextIO | None = None,
) -> Display:
    """The configured display; with ``gif_path`` also a GIF recording of every screen (written on close)."""
    display: Display
    if cfg.kind == "console":
        from hw.display.console import ConsoleDisplay

        display = ConsoleDisplay(stream, locale=locale, currency=currency)
    elif cfg.kind == "image":
        from hw.display.image import ImageDisplay

        display = ImageDisplay(
            cfg.image_dir or state_dir / "screens",
            width=cfg.width,
            height=cfg.height,
            locale=locale,
            currency=currency,
            pairing_url=pairing_url,
        )
    elif cfg.kind == "oled":
        from hw.display.oled import OledDisplay

        display = OledDisplay(cfg, locale=locale, currency=currency, pairing_url=pairing_url)
    else:
        from hw.display.null import NullDisplay

        display = NullDisplay()
    if gif_path is None:
        return display
    from hw.display.gif import GifRecorder
    from hw.display.tee import TeeDisplay

    recorder = GifRecorder(
        gif_path,
        width=cfg.width,
        height=cfg.height,
        locale=locale,
        currency=currency,
        pairing_url=pairing_url,
    )
    return TeeDisplay([display, recorder])
