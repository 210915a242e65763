"""A driver library missing (hidden by an import hook in a real `taptill run`), or an OLED that is not
there: one line at start naming what to install or check, an exit code, never a traceback, never "ready"."""

from __future__ import annotations

import ctypes.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from terminal.emulator.wallet import WalletEmulator
from terminal.service.drivers import GPIOZERO, LUMA_OLED, NFCPY, PYSCARD, Driver, Install, install_hint
from tests.terminal_lab import REPO, write_config

LIBRARY_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib/arm-linux-gnueabihf",
    "/lib/x86_64-linux-gnu",
    "/usr/lib",
)
EXIT_MISSING = 6
EXIT_CONFIG = 2

# Loaded by `site` at interpreter start (PYTHONPATH comes before the standard library's own): importing a
# hidden top-level package fails as it does on a machine where it was never installed.
SITECUSTOMIZE = """
import os, sys
from importlib.abc import MetaPathFinder

HIDDEN = set(filter(None, os.environ.get("TAPTILL_TEST_HIDE", "").split(",")))


class Hide(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Hide())
"""


def _run(config: Path, hook_dir: Path, hide: str, *args: str) -> subprocess.CompletedProcess[str]:
    (hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook_dir), env.get("PYTHONPATH", "")]))
    env["TAPTILL_TEST_HIDE"] = hide
    return subprocess.run(
        [sys.executable, "-m", "terminal", *args, "--config", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def _config(tmp_path: Path, emulator: WalletEmulator, reader: str, display: str) -> Path:
    config = write_config(tmp_path, emulator)
    text = config.read_text()
    text = text.replace('[reader]\nkind = "sim"', f"[reader]\n{reader}")
    text = text.replace('[display]\nkind = "none"', f"[display]\n{display}")
    config.write_text(text)
    return config


def _hint_here(driver: Driver) -> str:
    """The advice for this checkout's venv: its own pip, never apt (the venv cannot see python3-*) and
    never the taptill[extra] of an index (taptill is not on PyPI) — only a path to this checkout."""
    hint = install_hint(driver)
    assert hint.startswith(f"{sys.prefix}/bin/pip install "), hint
    assert "apt" not in hint and "'taptill[" not in hint, hint
    return hint


CASES = [
    ("nfc", 'kind = "nfcpy"\ndevice = "usb"', 'kind = "none"', '[reader] kind = "nfcpy"', NFCPY),
    ("smartcard", 'kind = "pcsc"', 'kind = "none"', '[reader] kind = "pcsc"', PYSCARD),
    ("luma", 'kind = "sim"', 'kind = "oled"', '[display] kind = "oled"', LUMA_OLED),
]


@pytest.mark.parametrize(("hide", "reader", "display", "setting", "driver"), CASES, ids=[c[0] for c in CASES])
def test_a_missing_driver_is_one_line_naming_the_package_and_never_ready(
    tmp_path: Path, hide: str, reader: str, display: str, setting: str, driver: Driver
) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = _config(tmp_path, emulator, reader, display)
        proc = _run(config, tmp_path, hide, "run")
        requests = emulator.stats()["requests"]
    assert proc.returncode == EXIT_MISSING, proc
    assert proc.stderr.strip() == f"taptill: {setting} needs {driver.name}: {_hint_here(driver)}", proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "ready" not in proc.stdout + proc.stderr
    assert requests == 0, "checked before anything started (not even the server was asked)"


def test_doctor_fails_the_reader_with_the_same_line(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = _config(tmp_path, emulator, 'kind = "nfcpy"\ndevice = "usb"', 'kind = "none"')
        proc = _run(config, tmp_path, "nfc", "doctor")
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stdout + proc.stderr
    reader = [line for line in proc.stdout.splitlines() if line.split()[1:2] == ["reader"]]
    assert reader == [f'FAIL reader      [reader] kind = "nfcpy" needs nfcpy: {_hint_here(NFCPY)}'], (
        proc.stdout
    )


def test_an_oled_without_its_bus_is_one_line_naming_bus_and_fix(tmp_path: Path) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = _config(tmp_path, emulator, 'kind = "sim"', 'kind = "oled"\ni2c_port = 250')
        proc = _run(config, tmp_path, "", "run")
    assert proc.returncode == EXIT_CONFIG, proc
    assert proc.stderr.strip().splitlines()[-1] == (
        "taptill: no I2C bus 250 (/dev/i2c-250 is missing): enable I2C with raspi-config "
        "or set [display] i2c_port"
    ), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "taptill ready" not in proc.stdout + proc.stderr


# A missing shared library, made missing for real: in a private mount namespace the library's file is
# /dev/null, so the dynamic loader fails on it as on a system without the Debian package.
LIBRARY_CASES = [
    ('kind = "pcsc"', '[reader] kind = "pcsc"', "libpcsclite.so.1", "pyscard", "libpcsclite1"),
    ('kind = "nfcpy"\ndevice = "usb"', '[reader] kind = "nfcpy"', "libusb-1.0.so.0", "nfcpy", "libusb-1.0-0"),
]


@pytest.mark.parametrize(
    ("reader", "setting", "library", "name", "deb"), LIBRARY_CASES, ids=["libpcsclite", "libusb"]
)
def test_a_missing_shared_library_names_its_debian_package_not_pip(
    tmp_path: Path, reader: str, setting: str, library: str, name: str, deb: str
) -> None:
    path = Path(ctypes.util.find_library(library.split(".so")[0].removeprefix("lib")) or library)
    real = next(Path(d, path.name).resolve() for d in LIBRARY_DIRS if Path(d, path.name).exists())
    with WalletEmulator.demo("doc") as emulator:
        config = _config(tmp_path, emulator, reader, 'kind = "none"')
        hidden = f'mount --bind /dev/null {shlex.quote(str(real))} && exec "$@"'
        proc = subprocess.run(
            [
                "unshare",
                "-m",
                "sh",
                "-c",
                hidden,
                "sh",
                sys.executable,
                "-m",
                "terminal",
                "run",
                "--config",
                str(config),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    assert proc.returncode == EXIT_MISSING, proc
    assert proc.stderr.strip() == (
        f"taptill: {setting} needs {library} for {name} (file too short): apt install {deb}"
    ), proc.stderr
    assert "pip" not in proc.stderr and "Traceback" not in proc.stdout + proc.stderr


def test_the_hint_fits_each_kind_of_install() -> None:
    """Provisioned venv, a clone's venv (editable or not), Debian's own Python, a venv seeing Debian's."""
    opt = Path("/opt/taptill/venv")
    provisioned = Install(opt, None, False, True, False)
    assert install_hint(NFCPY, provisioned) == (
        "re-run taptill-provision, which installs the extras the config needs into /opt/taptill/venv"
    )
    assert install_hint(LUMA_OLED, provisioned).startswith("sudo ")  # a core part: provisioning has it
    clone = Install(Path("/home/pi/taptill/.venv"), Path("/home/pi/taptill"), True, False, False)
    assert (
        install_hint(PYSCARD, clone) == "/home/pi/taptill/.venv/bin/pip install -e '/home/pi/taptill[pcsc]'"
    )
    wheel = Install(Path("/srv/venv"), None, False, False, False)  # installed from a built wheel
    assert install_hint(NFCPY, wheel) == "/srv/venv/bin/pip install 'nfcpy>=1.0.4'"
    system = Install(Path("/usr"), None, False, False, True, in_venv=False)
    assert install_hint(PYSCARD, system) == "apt install python3-pyscard"  # Debian's pip refuses (PEP 668)
    assert install_hint(NFCPY, system) == "/usr/bin/pip install 'nfcpy>=1.0.4'"  # Debian has no nfcpy
    shared = Install(Path("/srv/venv"), None, False, False, True)  # include-system-site-packages = true
    assert (
        install_hint(GPIOZERO, shared)
        == "/srv/venv/bin/pip install 'gpiozero>=2.0' (or apt install python3-gpiozero)"
    )


@pytest.mark.parametrize(
    ("reader", "setting", "name"), [('kind = "pcsc"', '[reader] kind = "pcsc"', "pyscard")]
)
def test_the_venv_provisioning_built_is_told_to_re_run_provisioning(
    tmp_path: Path, program_image: Path, reader: str, setting: str, name: str
) -> None:
    """taptill as provisioning installs it (its own venv, built here without any reader extra)."""
    venv = program_image / "opt" / "taptill" / "venv"
    with WalletEmulator.demo("doc") as emulator:
        config = _config(tmp_path, emulator, reader, 'kind = "none"')
        proc = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "terminal", "run", "--config", str(config)],
            cwd=tmp_path,  # not the checkout: the venv's own copy of taptill runs
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    assert proc.returncode == EXIT_MISSING, proc
    assert proc.stderr.strip() == (
        f"taptill: {setting} needs {name}: re-run taptill-provision, which installs the extras the config "
        f"needs into {venv}"
    ), proc.stderr
