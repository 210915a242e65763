"""Finds what is plugged in and installed: PC/SC readers, nfcpy USB readers, an I2C OLED, packages.

Hardware libraries are imported inside the probe that needs them, so this module loads anywhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from terminal.service.drivers import GPIOZERO, LUMA_OLED, NFCPY, PYSCARD, Driver, install_hint

I2C_SLAVE = 0x0703
OLED_ADDRESSES = (0x3C, 0x3D)
MIN_PYTHON = (3, 11)


@dataclass(frozen=True)
class Probe:
    """What one probe found: ``found`` items, or ``problem`` saying why it could not look."""

    found: tuple[str, ...] = ()
    problem: str | None = None


@dataclass(frozen=True)
class OledFound:
    port: int
    address: int

    def __str__(self) -> str:
        return f"/dev/i2c-{self.port} address 0x{self.address:02X}"


def pcsc_readers() -> Probe:
    """Reader names from pcscd (empty with a problem when pcscd or pyscard is missing)."""
    if importlib.util.find_spec("smartcard") is None:
        return Probe(problem=f"pyscard is not installed ({install_hint(PYSCARD)})")
    from smartcard import scard  # only this probe needs pyscard

    result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if result != scard.SCARD_S_SUCCESS:
        return Probe(problem=f"pcscd is not running ({scard.SCardGetErrorMessage(result).strip()})")
    try:
        result, names = scard.SCardListReaders(context, [])
        if result == scard.SCARD_E_NO_READERS_AVAILABLE:
            return Probe()
        if result != scard.SCARD_S_SUCCESS:
            return Probe(problem=f"pcscd did not list readers ({scard.SCardGetErrorMessage(result).strip()})")
        return Probe(found=tuple(str(n) for n in names))
    finally:
        scard.SCardReleaseContext(context)


def nfcpy_usb_readers() -> Probe:
    """USB devices nfcpy has a driver for, as ``usb:VVVV:PPPP (chip)``."""
    if importlib.util.find_spec("nfc") is None or importlib.util.find_spec("usb1") is None:
        return Probe(problem=f"nfcpy is not installed ({install_hint(NFCPY)})")
    import usb1  # type: ignore[import-untyped]  # nfcpy's USB layer
    from nfc.clf.device import usb_device_map

    found: list[str] = []
    try:
        with usb1.USBContext() as ctx:
            for dev in ctx.getDeviceIterator(skip_on_error=True):
                key = (dev.getVendorID(), dev.getProductID())
                if key in usb_device_map:
                    found.append(f"usb:{key[0]:04x}:{key[1]:04x} ({usb_device_map[key]})")
    except usb1.USBError as exc:
        return Probe(problem=f"cannot list USB devices ({exc})")
    return Probe(found=tuple(found))


def i2c_oleds(dev_glob: str = "/dev/i2c-*") -> tuple[list[OledFound], str | None]:
    """OLED panels answering at 0x3C/0x3D on any I2C bus; the second value explains an empty list."""
    buses = sorted(glob.glob(dev_glob))
    if not buses:
        return [], "no I2C bus (/dev/i2c-*); enable I2C with raspi-config nonint do_i2c 0"
    found: list[OledFound] = []
    denied: list[str] = []
    for bus in buses:
        try:
            port = int(bus.rsplit("-", 1)[1])
        except ValueError:
            continue
        for address in OLED_ADDRESSES:
            if _i2c_answers(bus, address, denied):
                found.append(OledFound(port, address))
    if not found and denied:
        return [], f"cannot open {denied[0]} (add the user to group i2c)"
    return found, None if found else "no device at 0x3C/0x3D"


def _i2c_answers(bus: str, address: int, denied: list[str]) -> bool:
    try:
        fd = os.open(bus, os.O_RDWR)
    except PermissionError:
        denied.append(bus)
        return False
    except OSError:
        return False
    try:
        fcntl.ioctl(fd, I2C_SLAVE, address)
        os.read(fd, 1)  # a one-byte read is ACKed only by a device at that address
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def python_ok() -> str | None:
    """None when this Python can run taptill, else what to install."""
    if sys.version_info < MIN_PYTHON:
        want = ".".join(map(str, MIN_PYTHON))
        return f"Python {sys.version.split()[0]} is too old; taptill needs {want} or newer"
    return None


# The module each feature imports, and what installs it into the Python running provisioning (its own
# venv's pip, never an index's taptill[extra]: taptill is not on PyPI).
MODULE_FOR = {
    "core": ("aiohttp", Driver("aiohttp", "aiohttp", None)),
    "pcsc": ("smartcard", PYSCARD),
    "nfcpy": ("nfc", NFCPY),
    "oled": ("luma.oled", LUMA_OLED),
    "gpio": ("gpiozero", GPIOZERO),
}

# core: the sqlite3 tool salvages the sales of a damaged journal (`taptill recover`, `taptill run`).
DEBS_FOR = {"core": ("sqlite3",), "pcsc": ("pcscd",), "nfcpy": ("libusb-1.0-0",)}


def missing_python(features: tuple[str, ...]) -> list[str]:
    missing = []
    for feature in features:
        module, driver = MODULE_FOR[feature]
        with contextlib.suppress(ModuleNotFoundError):
            if importlib.util.find_spec(module) is not None:
                continue
        what = "taptill's own dependencies" if feature == "core" else driver.name
        missing.append(f"{what} ({install_hint(driver)})")
    return missing


def missing_debs(features: tuple[str, ...]) -> list[str] | None:
    """Debian packages missing for ``features``; None when this is no Debian system (cannot tell)."""
    tool = shutil.which("dpkg-query")
    if tool is None:
        return None
    missing = []
    for feature in features:
        for deb in DEBS_FOR.get(feature, ()):
            proc = subprocess.run(
                [tool, "-W", "-f=${Status}", deb], capture_output=True, text=True, timeout=30, check=False
            )
            if "install ok installed" not in proc.stdout:
                missing.append(deb)
    return missing
