"""A driver library missing (hidden by an import hook in a real `taptill run`), or an OLED that is not
there: one line at start naming what to install or check, an exit code, never a traceback, never "ready"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import REPO, write_config

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


CASES = [
    (
        "nfc",
        'kind = "nfcpy"\ndevice = "usb"',
        'kind = "none"',
        "taptill: [reader] kind = \"nfcpy\" needs nfcpy: pip install 'taptill[nfc]' "
        "(nfcpy is not packaged for Debian)",
    ),
    (
        "smartcard",
        'kind = "pcsc"',
        'kind = "none"',
        "taptill: [reader] kind = \"pcsc\" needs pyscard: pip install 'taptill[pcsc]' "
        "or apt install python3-pyscard",
    ),
    (
        "luma",
        'kind = "sim"',
        'kind = "oled"',
        'taptill: [display] kind = "oled" needs luma.oled: pip install taptill again '
        "or apt install python3-luma.oled",
    ),
]


@pytest.mark.parametrize(("hide", "reader", "display", "line"), CASES, ids=[c[0] for c in CASES])
def test_a_missing_driver_is_one_line_naming_the_package_and_never_ready(
    tmp_path: Path, hide: str, reader: str, display: str, line: str
) -> None:
    with WalletEmulator.demo("doc") as emulator:
        config = _config(tmp_path, emulator, reader, display)
        proc = _run(config, tmp_path, hide, "run")
        requests = emulator.stats()["requests"]
    assert proc.returncode == EXIT_MISSING, proc
    assert proc.stderr.strip() == line, proc.stderr
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
    assert reader == [
        "FAIL reader      [reader] kind = \"nfcpy\" needs nfcpy: pip install 'taptill[nfc]' "
        "(nfcpy is not packaged for Debian)"
    ], proc.stdout


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
