"""The software displays: PNG frames, the GIF recording, the console, and the factory choosing one."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from hw.display.base import Display
from hw.display.console import ConsoleDisplay
from hw.display.factory import make_display
from hw.display.gif import GifRecorder
from hw.display.image import ImageDisplay
from hw.display.null import NullDisplay
from hw.display.oled import DisplayNotFound
from hw.display.render import render
from hw.display.tee import TeeDisplay
from terminal.config import DisplayConfig
from terminal.model import DeclineReason
from terminal.screens import (
    ApprovedScreen,
    BalanceScreen,
    DeclinedScreen,
    IdleScreen,
    PriceLine,
    ProcessingScreen,
    Screen,
)

pytestmark = pytest.mark.oled

SCREENS: tuple[Screen, ...] = (
    IdleScreen(prices=(PriceLine("Beer", 290), PriceLine("Club Mate", 250))),
    ProcessingScreen(),
    ApprovedScreen(amount_cents=290, balance_cents=710),
    DeclinedScreen(DeclineReason.INSUFFICIENT_BALANCE, balance_cents=120),
    BalanceScreen(balance_cents=710),
)


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_image_display_writes_each_changed_frame_and_latest(tmp_path: Path) -> None:
    display = ImageDisplay(tmp_path / "screens", height=32)
    for screen in SCREENS[:3]:
        display.show(screen)
        display.show(screen)
    display.close()
    files = sorted(p.name for p in (tmp_path / "screens").iterdir())
    assert files == ["frame-000001.png", "frame-000002.png", "frame-000003.png", "latest.png"]
    for n, screen in enumerate(SCREENS[:3], start=1):
        written = Image.open(tmp_path / "screens" / f"frame-{n:06d}.png")
        assert written.size == (128, 32)
        assert written.convert("1").tobytes() == render(screen, 128, 32).tobytes()
    latest = Image.open(tmp_path / "screens" / "latest.png").convert("1")
    assert latest.tobytes() == render(SCREENS[2], 128, 32).tobytes()


def test_image_display_continues_numbering_and_keeps_a_bounded_history(tmp_path: Path) -> None:
    first = ImageDisplay(tmp_path, keep=3)
    first.show(SCREENS[0])
    second = ImageDisplay(tmp_path, keep=3, scale=2)
    for screen in SCREENS[1:]:
        second.show(screen)
    names = sorted(p.name for p in tmp_path.glob("frame-*.png"))
    assert names == ["frame-000003.png", "frame-000004.png", "frame-000005.png"]
    assert Image.open(tmp_path / "frame-000005.png").size == (256, 128)


def test_image_display_names_an_unusable_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match=r"cannot create the screen image folder .*set \[display\] image_dir"):
        ImageDisplay(blocker / "screens")


def gif_frames(path: Path) -> list[tuple[Image.Image, int]]:
    gif = Image.open(path)
    out = []
    for i in range(getattr(gif, "n_frames", 1)):
        gif.seek(i)
        out.append((gif.convert("L").copy(), int(gif.info["duration"])))
    return out


def test_gif_recorder_writes_one_frame_per_change_with_real_durations(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "demo.gif"
    recorder = GifRecorder(path, scale=2, clock=clock)
    holds = [1.0, 0.5, 3.0, 0.25]
    for screen, hold in zip(SCREENS[:4], holds, strict=True):
        recorder.show(screen)
        recorder.show(screen)  # unchanged: not a new frame
        clock.now += hold
    recorder.close()
    recorder.close()  # closing twice writes once
    frames = gif_frames(path)
    assert len(frames) == 4
    assert [d for _, d in frames] == [1000, 500, 3000, 2000]  # the last frame is held 2 s
    for (img, _), screen in zip(frames, SCREENS, strict=False):
        expected = render(screen).resize((256, 128), Image.Resampling.NEAREST).convert("L")
        assert img.size == (256, 128)
        assert img.point(lambda v: 255 if v > 127 else 0).tobytes() == expected.tobytes()


def test_gif_recorder_records_page_turns(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "board.gif"
    recorder = GifRecorder(path, height=32, scale=1, clock=clock)
    board = IdleScreen(prices=tuple(PriceLine(f"P{i}", 100 * i) for i in range(6)))  # 3 pages at 128x32
    recorder.show(board)
    for _ in range(6):
        clock.now += recorder.page_seconds
        recorder.refresh()
    recorder.close()
    assert len(gif_frames(path)) == 7


def test_gif_recorder_error_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "demo.gif"
    recorder = GifRecorder(path)
    recorder.show(SCREENS[0])
    with pytest.raises(OSError, match=r"cannot write the GIF .*missing/demo\.gif"):
        recorder.close()


def test_console_prints_only_changed_screens_as_boxes() -> None:
    out = io.StringIO()
    console = ConsoleDisplay(out, locale="de")
    console.show(SCREENS[2])
    console.show(ApprovedScreen(amount_cents=290, balance_cents=710))
    console.show(SCREENS[1])
    text = out.getvalue()
    assert text.count("┌─ Approved") == 1 and text.count("┌─ Processing") == 1
    assert "│ 2,90 €" in text and "│ Balance 7,10 €" in text
    block = text.split("\n")[:4]
    assert len({len(line) for line in block}) == 1  # a closed rectangle
    en = io.StringIO()
    ConsoleDisplay(en, locale="en").show(SCREENS[2])
    assert "│ €2.90" in en.getvalue()


def test_factory_chooses_by_kind(tmp_path: Path) -> None:
    def make(cfg: DisplayConfig) -> Display:
        return make_display(cfg, locale="de", currency="EUR", state_dir=tmp_path, pairing_url=None)

    assert isinstance(make(DisplayConfig(kind="console")), ConsoleDisplay)
    assert isinstance(make(DisplayConfig(kind="none")), NullDisplay)
    image = make(DisplayConfig(kind="image", height=32))
    assert isinstance(image, ImageDisplay)
    image.show(SCREENS[0])
    assert (tmp_path / "screens" / "latest.png").exists()
    custom = make(DisplayConfig(kind="image", image_dir=tmp_path / "elsewhere"))
    assert isinstance(custom, ImageDisplay) and custom.image_dir == tmp_path / "elsewhere"
    with pytest.raises(DisplayNotFound, match="no I2C bus 250"):
        make(DisplayConfig(kind="oled", i2c_port=250))


def test_factory_adds_a_gif_recording(tmp_path: Path) -> None:
    out = io.StringIO()
    display = make_display(
        DisplayConfig(kind="console"),
        locale="en",
        currency="EUR",
        state_dir=tmp_path,
        pairing_url="https://pretix.example/pair",
        gif_path=tmp_path / "run.gif",
        stream=out,
    )
    assert isinstance(display, TeeDisplay)
    for screen in SCREENS:
        display.show(screen)
    display.close()
    assert out.getvalue().count("┌─") == len(SCREENS)
    assert len(gif_frames(tmp_path / "run.gif")) == len(SCREENS)
