"""The OLED adapter through luma.oled's SSD1306/SH1106 drivers: golden frames, changed frames, errors."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from luma.oled.device import sh1106, ssd1306
from PIL import Image, ImageChops

from hw.display.gallery import SAMPLES
from hw.display.oled import DisplayNotFound, OledDisplay, open_device
from hw.display.render import SIZES, page_count, render
from terminal.config import DisplayConfig
from terminal.model import DeclineReason
from terminal.screens import (
    ApprovedScreen,
    CartLine,
    CartScreen,
    DeclinedScreen,
    IdleScreen,
    KioskLockedScreen,
    PriceLine,
    ProcessingScreen,
    Screen,
)

# luma.oled still calls Image.getdata(), which Pillow deprecates; not ours to fix
pytestmark = [pytest.mark.oled, pytest.mark.filterwarnings("ignore:Image.Image.getdata:DeprecationWarning")]

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("TAPTILL_REGEN_GOLDEN") == "1"


class RecordingSerial:
    """A serial interface for luma's drivers that keeps every byte a panel would receive."""

    def __init__(self) -> None:
        self.commands: list[int] = []
        self.data_bytes: list[int] = []

    def command(self, *cmd: int) -> None:
        self.commands.extend(cmd)

    def data(self, data: list[int]) -> None:
        self.data_bytes.extend(data)

    def cleanup(self) -> None:
        pass


class Clock:
    """A hand-turned clock for page rotation."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def panel_image(data: list[int], width: int, height: int) -> Image.Image:
    """Decode one frame of SSD1306/SH1106 page-mode bytes (8 vertical pixels a byte, LSB on top)."""
    img = Image.new("1", (width, height), 0)
    px = img.load()
    assert px is not None
    for page in range(height // 8):
        for x in range(width):
            byte = data[page * width + x]
            for bit in range(8):
                if byte >> bit & 1:
                    px[x, page * 8 + bit] = 1
    return img


def frames_sent(serial: RecordingSerial, width: int, height: int) -> int:
    size = width * height // 8
    assert len(serial.data_bytes) % size == 0
    return len(serial.data_bytes) // size


def last_frame(serial: RecordingSerial, width: int, height: int) -> Image.Image:
    size = width * height // 8
    return panel_image(serial.data_bytes[-size:], width, height)


def panel(height: int, driver: type = ssd1306) -> tuple[OledDisplay, RecordingSerial, Clock]:
    serial = RecordingSerial()
    clock = Clock()
    cfg = DisplayConfig(kind="oled", height=height)
    display = OledDisplay(cfg, device=driver(serial, width=128, height=height), clock=clock, pairing_url=None)
    serial.data_bytes.clear()  # the driver blanks the panel when constructed
    return display, serial, clock


def golden_cases() -> list[tuple[str, Screen, int, int, int, str]]:
    cases = []
    for name, screen in SAMPLES.items():
        for width, height in SIZES:
            pages = page_count(screen, width, height)
            for page in range(pages):
                suffix = f"_p{page + 1}" if pages > 1 else ""
                cases.append((f"{name}_{width}x{height}{suffix}", screen, width, height, page, "de"))
    for name in ("approved", "cart", "credit", "idle_short"):
        for width, height in SIZES:
            cases.append((f"en_{name}_{width}x{height}", SAMPLES[name], width, height, 0, "en"))
    return cases


def _same_image(path: Path, actual: Image.Image) -> bool:
    """Whether the image at ``path`` exists and has exactly the pixels of ``actual``."""
    if not path.exists():
        return False
    expected = Image.open(path).convert("1")
    return expected.size == actual.size and expected.tobytes() == actual.tobytes()


def compare_with_golden(
    name: str, actual: Image.Image, out_dir: Path, *, golden: Path = GOLDEN, regen: bool = REGEN
) -> None:
    """Pass only when ``actual`` equals the committed golden image. TAPTILL_REGEN_GOLDEN=1 rewrites a
    missing or different one and still fails: a run with the switch set is never green on a changed
    screen (a CI that sets it by mistake cannot bless one)."""
    path = golden / f"{name}.png"
    if _same_image(path, actual):
        return
    if regen:
        golden.mkdir(exist_ok=True)
        actual.save(path)
        pytest.fail(f"rewrote {path}: review it, then run again without TAPTILL_REGEN_GOLDEN")
    if not path.exists():
        pytest.fail(f"golden image {path} is missing: run with TAPTILL_REGEN_GOLDEN=1 and review it")
    expected = Image.open(path).convert("1")
    out_dir.mkdir(parents=True, exist_ok=True)
    actual.save(out_dir / f"{name}.actual.png")
    if expected.size == actual.size:
        ImageChops.logical_xor(expected, actual).save(out_dir / f"{name}.diff.png")
    pytest.fail(
        f"{name} differs from {path}; actual and diff images written to {out_dir} "
        "(TAPTILL_REGEN_GOLDEN=1 rewrites the golden images)"
    )


def test_the_regeneration_switch_rewrites_a_changed_golden_and_still_fails(tmp_path: Path) -> None:
    golden, out = tmp_path / "golden", tmp_path / "out"
    old, new = Image.new("1", (8, 4), 0), Image.new("1", (8, 4), 1)
    golden.mkdir()
    old.save(golden / "screen.png")
    with pytest.raises(pytest.fail.Exception, match="review it, then run again without"):
        compare_with_golden("screen", new, out, golden=golden, regen=True)
    assert _same_image(golden / "screen.png", new), "the switch rewrites the golden image"
    compare_with_golden("screen", new, out, golden=golden, regen=True)  # unchanged now: compared, passes
    with pytest.raises(pytest.fail.Exception, match="review it"):
        compare_with_golden("missing", new, out, golden=golden, regen=True)
    assert _same_image(golden / "missing.png", new)
    with pytest.raises(pytest.fail.Exception, match="differs from"):
        compare_with_golden("screen", old, out, golden=golden, regen=False)
    assert _same_image(golden / "screen.png", new), "without the switch a golden image is never written"


@pytest.mark.parametrize(
    ("name", "screen", "width", "height", "page", "locale"),
    golden_cases(),
    ids=[c[0] for c in golden_cases()],
)
def test_screen_matches_golden_image_through_the_ssd1306_driver(
    name: str,
    screen: Screen,
    width: int,
    height: int,
    page: int,
    locale: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    display, serial, clock = panel(height)
    display.locale = locale
    display.show(screen)
    clock.now += page * display.page_seconds
    display.refresh()
    assert frames_sent(serial, width, height) == (1 if page == 0 else 2)
    sent = last_frame(serial, width, height)
    # the bytes on the wire are exactly the rendered image
    assert sent.tobytes() == render(screen, width, height, locale=locale, page=page).tobytes()
    compare_with_golden(name, sent, tmp_path_factory.getbasetemp() / "golden-actual")


def test_every_screen_type_has_a_golden_sample() -> None:
    import terminal.screens as screens

    types = {
        c for c in vars(screens).values() if isinstance(c, type) and issubclass(c, Screen) and c is not Screen
    }
    assert types <= {type(s) for s in SAMPLES.values()}


def test_every_committed_golden_image_is_still_rendered() -> None:
    names = {c[0] for c in golden_cases()}
    assert {p.stem for p in GOLDEN.glob("*.png")} == names


@pytest.mark.parametrize("height", [64, 32])
def test_only_changed_frames_are_sent_to_the_panel(height: int) -> None:
    display, serial, _ = panel(height)
    display.show(ProcessingScreen())
    display.show(ProcessingScreen())
    display.refresh()
    assert frames_sent(serial, 128, height) == 1
    display.show(ApprovedScreen(amount_cents=290, balance_cents=710))
    display.show(ApprovedScreen(amount_cents=290, balance_cents=710))
    assert frames_sent(serial, 128, height) == 2
    display.show(ApprovedScreen(amount_cents=290, balance_cents=700))  # one digit differs
    assert frames_sent(serial, 128, height) == 3
    display.show(ProcessingScreen())
    assert frames_sent(serial, 128, height) == 4
    assert display.frames_sent == 4
    assert last_frame(serial, 128, height).tobytes() == render(ProcessingScreen(), 128, height).tobytes()


def test_a_long_price_board_turns_its_pages_and_a_short_one_sends_nothing_more() -> None:
    display, serial, clock = panel(64)
    prices = tuple(PriceLine(f"Product {i}", 100 + i) for i in range(9))
    board = IdleScreen(prices=prices)
    assert page_count(board, 128, 64) == 3
    display.show(board)
    seen = [last_frame(serial, 128, 64).tobytes()]
    for _ in range(3):
        clock.now += display.page_seconds
        display.refresh()
        seen.append(last_frame(serial, 128, 64).tobytes())
    assert frames_sent(serial, 128, 64) == 4
    assert len(set(seen[:3])) == 3 and seen[3] == seen[0]  # three pages, then back to the first
    clock.now += display.page_seconds / 3
    display.refresh()
    display.show(board)  # the same board again keeps its page instead of restarting
    assert frames_sent(serial, 128, 64) == 4

    short, short_serial, short_clock = panel(64)
    short.show(IdleScreen(prices=prices[:2]))
    for _ in range(5):
        short_clock.now += short.page_seconds
        short.refresh()
    assert frames_sent(short_serial, 128, 64) == 1


def test_a_new_screen_starts_on_its_first_page() -> None:
    display, serial, clock = panel(32)
    cart = CartScreen(items=tuple(CartLine(f"Item {i}", 1, 100) for i in range(4)))
    display.show(KioskLockedScreen())
    clock.now += 7 * display.page_seconds
    display.show(cart)
    assert last_frame(serial, 128, 32).tobytes() == render(cart, 128, 32, page=0).tobytes()


@pytest.mark.parametrize("height", [64, 32])
def test_sh1106_receives_the_same_frames(height: int) -> None:
    display, serial, _ = panel(height, sh1106)
    screen = DeclinedScreen(DeclineReason.INSUFFICIENT_BALANCE, balance_cents=120)
    display.show(screen)
    display.show(screen)
    # the SH1106 driver writes page by page; its frame is the same 128 bytes per page
    assert frames_sent(serial, 128, height) == 1
    assert last_frame(serial, 128, height).tobytes() == render(screen, 128, height).tobytes()


def test_close_blanks_the_panel() -> None:
    display, serial, _ = panel(64)
    display.show(ProcessingScreen())
    display.close()
    assert frames_sent(serial, 128, 64) == 2
    assert not any(serial.data_bytes[-1024:])


def test_missing_i2c_bus_is_one_clear_sentence() -> None:
    cfg = DisplayConfig(kind="oled", i2c_port=250)
    with pytest.raises(DisplayNotFound) as info:
        open_device(cfg)
    assert str(info.value) == (
        "no I2C bus 250 (/dev/i2c-250 is missing): enable I2C with raspi-config or set [display] i2c_port"
    )


class SilentI2CBus:
    """An I2C bus on which no device acknowledges: the kernel answers EREMOTEIO, as with a missing panel."""

    def __init__(self) -> None:
        self.attempts: list[int] = []

    def write_i2c_block_data(self, address: int, register: int, data: list[int]) -> None:
        self.attempts.append(address)
        raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))

    def i2c_rdwr(self, *messages: object) -> None:
        raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))


def test_no_panel_at_the_address_names_bus_address_and_the_fix() -> None:
    cfg = DisplayConfig(kind="oled", i2c_port=1, i2c_address=0x3D)
    bus = SilentI2CBus()
    with pytest.raises(DisplayNotFound) as info:
        open_device(cfg, bus=bus)
    assert bus.attempts == [0x3D]
    assert str(info.value) == "no OLED at I2C bus 1 address 0x3D: check wiring or set [display] i2c_address"


def test_portrait_rotation_is_refused_before_touching_the_bus() -> None:
    with pytest.raises(DisplayNotFound, match="rotate = 1"):
        open_device(DisplayConfig(kind="oled", rotate=1), bus=SilentI2CBus())


def test_upside_down_panel_gets_the_rotated_frame() -> None:
    serial = RecordingSerial()
    device = ssd1306(serial, width=128, height=64, rotate=2)
    serial.data_bytes.clear()
    display = OledDisplay(DisplayConfig(kind="oled", rotate=2), device=device)
    display.show(ProcessingScreen())
    expected = render(ProcessingScreen(), 128, 64).rotate(180)
    assert last_frame(serial, 128, 64).tobytes() == expected.tobytes()
