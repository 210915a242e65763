"""The SSD1306 / SH1106 OLED panel over I2C or SPI, driven by luma.oled (imported only here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hw.display.base import DisplayNotFound as DisplayNotFound  # raised here; its callers import it here too
from hw.display.frames import PAGE_SECONDS, LumaDisplay
from hw.display.render import SIZES
from terminal.config import DisplayConfig


def where(cfg: DisplayConfig) -> str:
    if cfg.interface == "i2c":
        return f"I2C bus {cfg.i2c_port} address 0x{cfg.i2c_address:02X}"
    return f"SPI port {cfg.spi_port} device {cfg.spi_device}"


def open_device(cfg: DisplayConfig, bus: Any = None) -> Any:
    """The luma device for ``cfg``; ``bus`` replaces the smbus2 bus (a test's own I2C bus)."""
    if cfg.rotate in (1, 3):
        raise DisplayNotFound(
            f"[display] rotate = {cfg.rotate} turns the panel to portrait, which has no "
            "screen layouts; use rotate = 0 or 2"
        )
    if (cfg.width, cfg.height) not in SIZES:
        raise DisplayNotFound(
            f"no screen layouts for a {cfg.width}x{cfg.height} panel; set [display] height to 64 or 32"
        )
    from luma.core.error import DeviceNotFoundError, DevicePermissionError
    from luma.core.interface.serial import i2c, spi
    from luma.oled.device import sh1106, ssd1306

    driver = {"ssd1306": ssd1306, "sh1106": sh1106}[cfg.driver]
    try:
        if cfg.interface == "i2c":
            serial = i2c(bus=bus, port=cfg.i2c_port, address=cfg.i2c_address)
        else:
            serial = spi(port=cfg.spi_port, device=cfg.spi_device)
        # the driver's constructor already sends the init commands: a missing panel fails here
        return driver(serial, width=cfg.width, height=cfg.height, rotate=cfg.rotate)
    except DevicePermissionError:
        raise DisplayNotFound(
            f"no permission to open the OLED at {where(cfg)}: add the service user to the i2c/spi group"
        ) from None
    except DeviceNotFoundError as exc:
        if cfg.interface == "i2c" and "on address" not in str(exc):
            raise DisplayNotFound(
                f"no I2C bus {cfg.i2c_port} (/dev/i2c-{cfg.i2c_port} is missing): "
                "enable I2C with raspi-config or set [display] i2c_port"
            ) from None
        hint = "set [display] i2c_address" if cfg.interface == "i2c" else "enable SPI with raspi-config"
        raise DisplayNotFound(f"no OLED at {where(cfg)}: check wiring or {hint}") from None
    except (ImportError, RuntimeError) as exc:
        # luma's SPI needs RPi.GPIO and spidev, which only exist on a Pi
        raise DisplayNotFound(
            f"cannot drive the OLED at {where(cfg)} ({exc}): install python3-rpi.gpio and "
            'python3-spidev, or use [display] interface = "i2c"'
        ) from None
    except OSError as exc:
        raise DisplayNotFound(
            f"no OLED at {where(cfg)} ({exc.strerror}): check wiring and the [display] settings"
        ) from None


class OledDisplay(LumaDisplay):
    """The panel; pass ``device`` (e.g. ``ssd1306(noop())``) to run without hardware."""

    name = "oled"

    def __init__(
        self,
        cfg: DisplayConfig,
        *,
        device: Any = None,
        locale: str = "de",
        currency: str = "EUR",
        pairing_url: str | None = None,
        page_seconds: float = PAGE_SECONDS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            device if device is not None else open_device(cfg),
            locale=locale,
            currency=currency,
            pairing_url=pairing_url,
            page_seconds=page_seconds,
            clock=clock,
        )
        self.config = cfg
