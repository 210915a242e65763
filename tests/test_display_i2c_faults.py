"""I2C errors mid-frame (Errno 121 on long wires): luma's ssd1306 driver on a bus failing every n-th write.

The panel's memory is rebuilt from the bytes the bus accepted, so a torn frame shows as what it is.
"""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import os
import socket
from pathlib import Path

import pytest
from luma.core.interface.serial import i2c
from luma.oled.device import ssd1306
from PIL import Image

from hw.display.console import ConsoleDisplay
from hw.display.gallery import SAMPLES
from hw.display.health import QUIET_S
from hw.display.image import ImageDisplay
from hw.display.oled import OledDisplay
from hw.display.render import render
from hw.display.tee import TeeDisplay
from hw.gpio.outputs import LogOutputs
from terminal.config import DisplayConfig, OfflineConfig
from terminal.controller import Controller, ControllerSettings
from terminal.device_loop import DeviceLoop
from terminal.journal import Journal
from terminal.model import Product
from terminal.screens import ApprovedScreen, IdleScreen, PriceLine, ProcessingScreen, Screen
from terminal.service.sd_notify import Notifier
from terminal.service.secret import Secret
from terminal.wallet.client import WalletClient
from terminal.wallet.health import ServerHealth
from terminal.wallet.sale_sender import SaleSender

# luma.oled still calls Image.getdata(), which Pillow deprecates; not ours to fix
pytestmark = [pytest.mark.oled, pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")]

IDLE = IdleScreen(prices=(PriceLine("Beer", 290), PriceLine("Club Mate", 250)))
APPROVED = ApprovedScreen(amount_cents=290, balance_cents=710)

# SSD1306 commands that take argument bytes (datasheet section 10); every other byte is a whole command
ARGUMENTS = {
    0x20: 1, 0x21: 2, 0x22: 2, 0x26: 6, 0x27: 6, 0x29: 5, 0x2A: 5, 0x81: 1, 0x8D: 1,
    0xA3: 2, 0xA8: 1, 0xD3: 1, 0xD5: 1, 0xD9: 1, 0xDA: 1, 0xDB: 1,
}  # fmt: skip


class Ssd1306Panel:
    """The controller's display RAM and address pointer, driven by the command and data bytes it receives.

    Horizontal addressing (what luma selects) walks the column window, then the next page; page
    addressing (the power-on default) walks one page's columns. A command cut off by a failed
    transfer waits for its missing arguments, as in the chip.
    """

    def __init__(self, width: int = 128, height: int = 64) -> None:
        self.width, self.pages = width, height // 8
        self.ram = [[0] * width for _ in range(self.pages)]
        self.horizontal = False
        self.columns = (0, width - 1)
        self.page_window = (0, self.pages - 1)
        self.column = self.page = 0
        self._command: list[int] = []

    def command_bytes(self, data: list[int]) -> None:
        for byte in data:
            self._command.append(byte)
            if len(self._command) > ARGUMENTS.get(self._command[0], 0):
                self._execute(self._command)
                self._command = []

    def _execute(self, cmd: list[int]) -> None:
        op = cmd[0]
        if op == 0x20:
            self.horizontal = cmd[1] & 3 == 0
        elif op == 0x21:
            self.columns = (cmd[1], cmd[2])
            self.column = cmd[1]
        elif op == 0x22:
            self.page_window = (cmd[1] & 7, cmd[2] & 7)
            self.page = cmd[1] & 7
        elif op <= 0x0F:
            self.column = self.column & 0xF0 | op
        elif op <= 0x1F:
            self.column = self.column & 0x0F | (op & 0x0F) << 4
        elif 0xB0 <= op <= 0xB7:
            self.page = op & 7

    def data_bytes(self, data: list[int]) -> None:
        for byte in data:
            self.ram[self.page][self.column] = byte
            if not self.horizontal:
                self.column = (self.column + 1) % self.width
            elif self.column < self.columns[1]:
                self.column += 1
            else:
                self.column = self.columns[0]
                self.page = self.page + 1 if self.page < self.page_window[1] else self.page_window[0]

    def image(self) -> Image.Image:
        img = Image.new("1", (self.width, self.pages * 8), 0)
        px = img.load()
        assert px is not None
        for page, row in enumerate(self.ram):
            for x, byte in enumerate(row):
                for bit in range(8):
                    if byte >> bit & 1:
                        px[x, page * 8 + bit] = 1
        return img


class FlakyI2CBus:
    """An smbus2-shaped bus to one SSD1306 on which every ``fail_every``-th write fails with Errno 121.

    A failing write delivers the first half of its bytes before the error, as when the panel stops
    acknowledging part-way: those bytes are in the panel's memory, the rest never arrive.
    """

    def __init__(self, panel: Ssd1306Panel, fail_every: int | None = None) -> None:
        self.panel = panel
        self.fail_every = fail_every
        self.writes = 0
        self.failed = 0

    def write_i2c_block_data(self, address: int, register: int, data: list[int]) -> None:
        assert address == 0x3C and len(data) <= 32
        self.writes += 1
        failing = self.fail_every is not None and self.writes % self.fail_every == 0
        delivered = data[: len(data) // 2] if failing else data
        # control byte 0x00: command stream, 0x40: display data (SSD1306 datasheet 8.1.5.2)
        (self.panel.command_bytes if register == 0x00 else self.panel.data_bytes)(delivered)
        if failing:
            self.failed += 1
            raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))


class Clock:
    """A hand-turned clock (pages and the quiet time that ends a burst of failures)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def oled_on_flaky_bus(
    height: int = 64, fail_every: int | None = None, clock: Clock | None = None
) -> tuple[OledDisplay, FlakyI2CBus]:
    panel = Ssd1306Panel(128, height)
    bus = FlakyI2CBus(panel)  # healthy while the driver initialises the panel
    device = ssd1306(i2c(bus=bus, address=0x3C), width=128, height=height)
    bus.fail_every = fail_every
    return OledDisplay(DisplayConfig(kind="oled", height=height), device=device, clock=clock), bus


def on_panel(bus: FlakyI2CBus) -> bytes:
    return bus.panel.image().tobytes()


def shown(screen: Screen, height: int = 64) -> bytes:
    return render(screen, 128, height).tobytes()


def test_the_panel_model_agrees_with_luma_on_a_healthy_bus() -> None:
    display, bus = oled_on_flaky_bus()
    for screen in SAMPLES.values():
        display.show(screen)
        assert on_panel(bus) == shown(screen)
    assert bus.failed == 0


def test_a_frame_torn_by_an_i2c_error_is_redrawn_when_the_same_screen_returns() -> None:
    # the field report: idle shown, the next frame fails part-way, idle again was "already shown"
    display, bus = oled_on_flaky_bus()
    display.show(IDLE)
    assert on_panel(bus) == shown(IDLE)
    bus.fail_every, bus.writes = 12, 0  # the 12th write of the next frame: its 11th block of 32 bytes
    display.show(APPROVED)  # logged, not raised: sales go on
    assert bus.failed == 1
    torn = on_panel(bus)
    assert torn not in (shown(IDLE), shown(APPROVED))  # half one, half the other: what the guest saw
    bus.fail_every = None
    display.show(IDLE)
    assert on_panel(bus) == shown(IDLE)


@pytest.mark.parametrize("height", [64, 32])
@pytest.mark.parametrize("fail_every", [2, 7, 16, 33, 34, 50])
def test_after_any_burst_of_i2c_errors_the_panel_holds_exactly_the_current_frame(
    height: int, fail_every: int
) -> None:
    display, bus = oled_on_flaky_bus(height)
    for screen in [*SAMPLES.values(), APPROVED]:
        bus.fail_every = fail_every  # the count of writes runs on: failures land at every offset
        display.show(screen)
        display.refresh()
        if display.trouble is None:  # the last send got through: the panel shows exactly this screen
            assert on_panel(bus) == display._last == shown(screen, height)
        # the failures stop and the terminal goes back to idle (which it may have shown before)
        bus.fail_every = None
        display.show(IDLE)
        assert on_panel(bus) == display._last == shown(IDLE, height)
        assert display.trouble is None
    assert bus.failed > 0


def test_a_burst_of_failures_is_one_warning_line_and_one_line_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    display, bus = oled_on_flaky_bus(fail_every=2, clock=clock)  # every frame fails
    warning = "oled display: a frame failed ([Errno 121] Remote I/O error); retrying with whole frames"
    with caplog.at_level(logging.WARNING, logger="taptill.display"):
        for screen in (IDLE, APPROVED, ProcessingScreen(), IDLE):
            display.show(screen)
            display.refresh()
        assert display.trouble == "oled display failing: [Errno 121] Remote I/O error"
        bus.fail_every = None
        display.refresh()
        assert display.trouble is None and on_panel(bus) == shown(IDLE)
        # a wire that fails now and then is one burst, not two lines a frame
        clock.now += 10
        bus.fail_every = 2
        display.show(APPROVED)
        bus.fail_every = None
        display.refresh()
        clock.now += QUIET_S
        display.show(IDLE)  # a minute without a failure: the burst is over
        bus.fail_every = 2
        display.show(APPROVED)  # a new burst
    lines = [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records]
    assert lines == [
        ("WARNING", warning, None),
        ("WARNING", "oled display works again; 9 frames had failed", None),
        ("WARNING", warning, None),
    ]
    assert display.health.failures == 10


def test_a_failing_panel_does_not_keep_frames_from_the_image_display(tmp_path: Path) -> None:
    oled, bus = oled_on_flaky_bus(fail_every=2)
    images = ImageDisplay(tmp_path / "screens")
    tee = TeeDisplay([oled, images])
    for screen in (IDLE, APPROVED, IDLE):
        tee.show(screen)
    assert images.count == 3
    assert Image.open(tmp_path / "screens" / "latest.png").convert("1").tobytes() == shown(IDLE)
    assert tee.trouble == "oled display failing: [Errno 121] Remote I/O error"
    bus.fail_every = None
    tee.refresh()
    assert on_panel(bus) == shown(IDLE) and tee.trouble is None
    tee.close()  # blanks the panel; a failing one would be logged, not raised
    assert not any(on_panel(bus))


def test_closing_a_panel_that_no_longer_answers_is_not_an_error() -> None:
    display, _ = oled_on_flaky_bus(fail_every=1)
    display.close()
    assert display.health.failures == 1


class RaisingDisplay:
    """A display adapter whose show() raises (a bug in a third display, say)."""

    def show(self, screen: Screen) -> None:
        raise RuntimeError("broken adapter")

    def close(self) -> None:
        raise RuntimeError("broken adapter")


def test_a_display_that_raises_does_not_keep_the_screen_from_the_next_one() -> None:
    out = io.StringIO()
    tee = TeeDisplay([RaisingDisplay(), ConsoleDisplay(out)])
    with pytest.raises(RuntimeError):
        tee.show(IDLE)
    assert "Tap your card" in out.getvalue()
    with pytest.raises(RuntimeError):
        tee.close()


def test_a_console_write_that_fails_is_retried_with_the_same_screen(caplog: pytest.LogCaptureFixture) -> None:
    with open("/dev/full", "w") as full:  # every flush fails with ENOSPC, as a full log disk would
        console = ConsoleDisplay(full)
        with caplog.at_level(logging.WARNING, logger="taptill.display"):
            console.show(IDLE)
            console.show(IDLE)
        assert console.trouble == "console display failing: [Errno 28] No space left on device"
        out = io.StringIO()
        console.stream = out
        console.show(IDLE)  # not "already shown": it never was
        assert "Tap your card" in out.getvalue() and console.trouble is None
        with pytest.raises(OSError):
            full.close()  # its buffer still holds the frame /dev/full refused
    assert [(r.getMessage(), r.exc_info) for r in caplog.records] == [
        (
            "console display: a frame failed ([Errno 28] No space left on device); "
            "retrying with whole frames",
            None,
        ),  # and no second line for the retry that failed too
    ]


class NotifySocket:
    """The service manager's end of $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    def statuses(self) -> list[str]:
        out: list[str] = []
        while True:
            try:
                message = self.sock.recv(4096).decode()
            except BlockingIOError:
                return out
            out += [
                line.removeprefix("STATUS=") for line in message.split("\n") if line.startswith("STATUS=")
            ]


def test_a_panel_that_keeps_failing_shows_in_the_service_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    display, bus = oled_on_flaky_bus(fail_every=2)

    async def main() -> list[str]:
        journal = Journal.open(tmp_path / "j.sqlite3")
        client = WalletClient("http://127.0.0.1:9/api", Secret("t"), timeout_s=1.0)
        health = ServerHealth()
        loop = DeviceLoop(
            controller=Controller(
                ControllerSettings(products=("espresso",), offline=OfflineConfig()),
                (Product("espresso", "Espresso", 250),),
            ),
            journal=journal,
            client=client,
            sender=SaleSender(journal, client, health, dedupes=True),
            health=health,
            display=display,
            outputs=LogOutputs(),
            description="x",
            tag=None,
            tap_budget_s=0.8,
            notifier=Notifier(),
        )
        stop = asyncio.Event()
        task = asyncio.ensure_future(loop.run(stop))
        seen: list[str] = []
        try:
            while not seen:
                await asyncio.sleep(0.05)
                seen += notify.statuses()
            bus.fail_every = None  # the wire is fixed: the next refresh gets a frame through
            while len(seen) < 2:
                await asyncio.sleep(0.05)
                seen += notify.statuses()
        finally:
            stop.set()
            await task
            await client.aclose()
            journal.close()
        return seen

    assert asyncio.run(asyncio.wait_for(main(), 60)) == [
        "oled display failing: [Errno 121] Remote I/O error",
        "waiting for cards",
    ]
    assert bus.panel.image().tobytes() != bytes(len(bus.panel.image().tobytes()))  # a whole frame, not blank
    assert display.trouble is None and display._last == on_panel(bus)
