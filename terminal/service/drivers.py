"""Checks that the driver libraries the config needs are installed, and says how to install them here.

`taptill run` checks them before anything starts (a reader thread that cannot import its driver would
die after "taptill ready", leaving a terminal that can never read a card), and `taptill doctor` reports
the same lines. The advice names a command that works for the running install: the venv's own pip
(taptill is not on PyPI, so `pip install 'taptill[nfc]'` finds nothing, and a venv does not see Debian's
python3-* packages), with the checkout and its extra when taptill runs from a clone, or re-running
taptill-provision for the venv it built (/opt/taptill/venv). apt is named for the system libraries the
drivers load (libpcsclite1, libusb-1.0-0), and for python3-* packages only where the interpreter sees them.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import re
import sys
import warnings
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote

import terminal
from terminal.config import Config
from terminal.wallet.catalog import StartupError

STAMP_NAME = "taptill-provision.json"  # provisioning/install.py writes it into the venv it builds
PROVISIONED_EXTRAS = frozenset({"pcsc", "nfc"})  # the extras taptill-provision installs for a reader
# Shared libraries the drivers load, by the start of their file name: the Debian package with them.
LIBRARY_DEBS = {"libpcsclite": "libpcsclite1", "libusb-1.0": "libusb-1.0-0", "liblgpio": "liblgpio1"}


class MissingDriver(StartupError):
    """A driver library the configuration needs is missing; one line per library, saying what to install."""


@dataclass(frozen=True)
class Driver:
    """A hardware library: the module to import, its distribution, the taptill extra that brings it (None
    for a core dependency), its Debian package (None if Debian has none), and the shared library it
    loads at run time (file name), if any."""

    module: str
    name: str
    extra: str | None
    deb: str | None = None
    library: str | None = None


NFCPY = Driver("nfc", "nfcpy", "nfc")
NFCPY_USB = replace(NFCPY, library="libusb-1.0.so.0")  # loaded by python-libusb1 at the first open
PYSCARD = Driver("smartcard.scard", "pyscard", "pcsc", "python3-pyscard", "libpcsclite.so.1")
LUMA_OLED = Driver("luma.oled.device", "luma.oled", None, "python3-luma.oled")
GPIOZERO = Driver("gpiozero", "gpiozero", "gpio", "python3-gpiozero")


@dataclass(frozen=True)
class Install:
    """Where the running taptill is installed, as far as installing more into it goes."""

    prefix: Path  # sys.prefix: the venv (or system) this interpreter installs into
    checkout: Path | None  # the clone taptill runs from (editable install or source tree), if any
    editable: bool  # installed with pip install -e from that checkout
    provisioned: bool  # the venv taptill-provision built (it holds STAMP_NAME)
    sees_debian: bool  # Debian's python3-* packages are importable here (system Python, or a venv with
    # include-system-site-packages = true on it)
    in_venv: bool = True

    @property
    def pip(self) -> str:
        """The pip of this install: the venv's own (a bare `pip` may be another Python's)."""
        pip = self.prefix / "bin" / "pip"
        if pip.exists() or self.prefix != Path(sys.prefix):
            return str(pip)
        return f"{sys.executable} -m pip"


def running_install() -> Install:
    """The install of the running interpreter and taptill."""
    prefix = Path(sys.prefix)
    root = Path(terminal.__file__).resolve().parent.parent
    source, editable = _installed_from()
    checkout = root if source == root and _is_taptill_checkout(root) else None
    return Install(
        prefix=prefix,
        checkout=checkout,
        editable=checkout is not None and editable,
        provisioned=(prefix / STAMP_NAME).is_file(),
        sees_debian=Path(sys.base_prefix) == Path("/usr")
        and (sys.prefix == sys.base_prefix or _system_site_packages(prefix)),
        in_venv=sys.prefix != sys.base_prefix,
    )


def install_hint(driver: Driver, install: Install | None = None) -> str:
    """The command that installs ``driver`` into the running install, in one line (no trailing period)."""
    here = install or running_install()
    apt = f"apt install {driver.deb}" if here.sees_debian and driver.deb else None
    if here.provisioned and driver.extra in PROVISIONED_EXTRAS:
        hint = f"re-run taptill-provision, which installs the extras the config needs into {here.prefix}"
    elif here.provisioned:
        hint = f"sudo {here.pip} install '{_requirement(driver)}'"
    elif here.checkout is not None:
        # The checkout with its extra, as it was installed (-e keeps a developer's edits live).
        extra = f"[{driver.extra}]" if driver.extra else ""
        editable = "-e " if here.editable else ""
        hint = f"{here.pip} install {editable}'{here.checkout}{extra}'"
    elif apt is not None and not here.in_venv:
        return apt  # Debian's own Python: its pip refuses to install into the system (PEP 668)
    else:
        hint = f"{here.pip} install '{_requirement(driver)}'"
    return f"{hint} (or {apt})" if apt is not None else hint


def library_hint(library: str) -> str:
    """What to install for a missing shared library (a Debian package, never pip)."""
    for stem, deb in LIBRARY_DEBS.items():
        if library.startswith(stem):
            return f"apt install {deb}"
    return f"install the Debian package that holds {library} (apt-file search {library})"


def needed(cfg: Config) -> dict[str, tuple[str, Driver]]:
    """The drivers ``cfg`` needs, by the part that needs them ("reader", "display", "gpio"), each with
    the setting that asks for it (as a person finds it in the config file)."""
    wanted: dict[str, tuple[str, Driver]] = {}
    if cfg.reader.kind == "nfcpy":
        usb = cfg.reader.device.startswith("usb")
        wanted["reader"] = ('[reader] kind = "nfcpy"', NFCPY_USB if usb else NFCPY)
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
        problem = _driver_problem(driver)
        if problem is not None:
            problems[part] = f"{setting} needs {problem}"
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


def _driver_problem(driver: Driver) -> str | None:
    """None when ``driver`` loads; else what is missing and how to install it, in one line."""
    if driver.library is not None:
        # Checked first: pyscard imports without its library (it prints a line and fails every call
        # later, like a pcscd that is not running), python-libusb1 fails only at the first open.
        try:
            ctypes.CDLL(driver.library)
        except OSError as exc:
            return f"{driver.library} for {driver.name} ({_short(exc)}): {library_hint(driver.library)}"
    try:
        importlib.import_module(driver.module)
    except ModuleNotFoundError as exc:
        top = driver.module.split(".")[0]
        if exc.name is not None and (exc.name == top or exc.name.startswith(top + ".")):
            return f"{driver.name}: {install_hint(driver)}"
        return f"{driver.name}, which cannot load ({exc}): {install_hint(driver)}"
    except Exception as exc:  # ImportError from a missing shared library, OSError from ctypes loaders
        library = _library_in(str(exc))
        if library is not None:
            return f"{library} for {driver.name} ({_short(exc)}): {library_hint(library)}"
        return f"{driver.name}, which cannot load ({exc}): {install_hint(driver)}"
    return None


def _library_in(message: str) -> str | None:
    """The shared library an import error names ("libpcsclite.so.1: cannot open shared object file")."""
    found = re.search(r"(lib[\w.+-]*\.so(?:\.\d+)*)", message)
    return found[1] if found else None


def _short(exc: BaseException) -> str:
    """The loader's reason without the path it repeats ("/lib/…/libusb-1.0.so.0: file too short")."""
    text = str(exc)
    return text.rsplit(": ", 1)[-1] if ": " in text else text


def _requirement(driver: Driver) -> str:
    """The requirement taptill's metadata gives ``driver`` ("nfcpy>=1.0.4"), else its bare name."""
    try:
        requires = metadata.requires("taptill") or []
    except metadata.PackageNotFoundError:
        requires = []
    for line in requires:
        spec = line.split(";", 1)[0].strip()
        name = re.split(r"[<>=!~\[ ]", spec, maxsplit=1)[0]
        if name.lower().replace("_", "-") == driver.name.lower().replace("_", "-"):
            return spec
    return driver.name


def _is_taptill_checkout(root: Path) -> bool:
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return False
    return re.search(r'^name\s*=\s*"taptill"', text, re.M) is not None


def _installed_from() -> tuple[Path | None, bool]:
    """The local directory pip installed taptill from (PEP 610 direct_url.json), and whether it was
    installed editable (-e); (None, False) for an install from elsewhere or none at all."""
    try:
        direct = json.loads(metadata.distribution("taptill").read_text("direct_url.json") or "{}")
        url = str(direct.get("url", ""))
        editable = bool(direct.get("dir_info", {}).get("editable", False))
    except (metadata.PackageNotFoundError, ValueError, AttributeError):
        return None, False
    if not url.startswith("file://"):
        return None, False
    return Path(unquote(url.removeprefix("file://"))).resolve(), editable


def _system_site_packages(prefix: Path) -> bool:
    try:
        text = (prefix / "pyvenv.cfg").read_text(encoding="utf-8")
    except OSError:
        return False
    found = re.search(r"^include-system-site-packages\s*=\s*(\S+)", text, re.M)
    return found is not None and found[1].lower() == "true"


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
        here = running_install()
        sudo = "sudo " if here.provisioned else ""
        apt = " or apt install python3-lgpio" if here.sees_debian else ""
        return f"finds no GPIO pin library: {sudo}{here.pip} install lgpio{apt} (or set GPIOZERO_PIN_FACTORY)"
    except Exception as exc:  # a pin library that loads but cannot open the GPIO chip (permissions)
        return f"cannot open the GPIO pins ({exc}); add the service user to group gpio"
    return None
