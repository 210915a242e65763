"""Checks that the driver libraries the config names are installed, and says which package to install.

`taptill run` checks them before anything starts (a reader thread that cannot import its driver would
die after "taptill ready", leaving a terminal that can never read a card), and `taptill doctor` reports
the same lines. Package names are the ones that exist: the pip extras in pyproject.toml and Debian
bookworm's packages (nfcpy has none).
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass

from terminal.catalog import StartupError
from terminal.config import Config


class MissingDriver(StartupError):
    """A driver library the configuration needs is missing; one line per library, saying what to install."""


@dataclass(frozen=True)
class Driver:
    """A hardware library: the module to import, its distribution name, and how to install it."""

    module: str
    name: str
    install: str  # what a person runs, e.g. "pip install 'taptill[nfc]' (not packaged for Debian)"


NFCPY = Driver("nfc", "nfcpy", "pip install 'taptill[nfc]' (nfcpy is not packaged for Debian)")
PYSCARD = Driver("smartcard.scard", "pyscard", "pip install 'taptill[pcsc]' or apt install python3-pyscard")
LUMA_OLED = Driver(
    "luma.oled.device", "luma.oled", "pip install taptill again or apt install python3-luma.oled"
)
GPIOZERO = Driver("gpiozero", "gpiozero", "pip install 'taptill[gpio]' or apt install python3-gpiozero")


def needed(cfg: Config) -> dict[str, tuple[str, Driver]]:
    """The drivers ``cfg`` needs, by the part that needs them ("reader", "display", "gpio"), each with
    the setting that asks for it (as a person finds it in the config file)."""
    wanted: dict[str, tuple[str, Driver]] = {}
    if cfg.reader.kind == "nfcpy":
        wanted["reader"] = ('[reader] kind = "nfcpy"', NFCPY)
    elif cfg.reader.kind == "pcsc":
        wanted["reader"] = ('[reader] kind = "pcsc"', PYSCARD)
    if cfg.display.kind == "oled":
        wanted["display"] = ('[display] kind = "oled"', LUMA_OLED)
    if cfg.gpio.enabled:
        wanted["gpio"] = ("[gpio] enabled = true", GPIOZERO)
    return wanted


def missing_drivers(cfg: Config) -> dict[str, str]:
    """What is missing, by part ("reader", "display", "gpio"): one line each, saying what to install."""
    problems: dict[str, str] = {}
    for part, (setting, driver) in needed(cfg).items():
        problem = _import_problem(driver)
        if problem is not None:
            problems[part] = f"{setting} needs {driver.name}{problem}: {driver.install}"
        elif part == "gpio":
            pins = _pin_library_problem()
            if pins is not None:
                problems[part] = f"{setting} but gpiozero {pins}"
    return problems


def check_drivers(cfg: Config) -> None:
    """Raise MissingDriver (one line per missing library) unless every driver ``cfg`` needs imports."""
    problems = missing_drivers(cfg)
    if problems:
        raise MissingDriver("; ".join(problems.values()))


def _import_problem(driver: Driver) -> str | None:
    """None when ``driver`` imports; else "" for a library that is not installed at all, or " (why)"
    for one that is installed but cannot load (a C library it needs is missing)."""
    try:
        importlib.import_module(driver.module)
    except ModuleNotFoundError as exc:
        top = driver.module.split(".")[0]
        if exc.name is not None and (exc.name == top or exc.name.startswith(top + ".")):
            return ""
        return f" (it cannot load: {exc})"
    except Exception as exc:  # ImportError from a missing shared library, OSError from ctypes loaders
        return f" (it cannot load: {exc})"
    return None


def _pin_library_problem() -> str | None:
    """gpiozero without a pin library (lgpio on a Pi) fails at the first pin; find that out now."""
    from gpiozero import Device
    from gpiozero.exc import BadPinFactory, PinFactoryFallback

    try:
        with warnings.catch_warnings():
            # gpiozero warns for every library it tries in turn; the one line below says what matters.
            warnings.simplefilter("ignore", PinFactoryFallback)
            Device.ensure_pin_factory()
    except BadPinFactory:
        return "finds no GPIO pin library: pip install lgpio (or set GPIOZERO_PIN_FACTORY)"
    except Exception as exc:  # a pin library that loads but cannot open the GPIO chip (permissions)
        return f"cannot open the GPIO pins ({exc}); add the service user to group gpio"
    return None
