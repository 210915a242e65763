"""A reader that is not there, in a real `taptill run`: an nfcpy device path with nothing behind it (`usb`,
`tty:AMA0:pn532`), or a PC/SC reader without pcscd. Each failed attempt is one warning line of taptill's
(what, which device, next retry) with delays growing 1 s, 2 s, 4 s; nfcpy's own per-attempt lines stay
out of the log; `status` and `doctor` count every failed attempt and give the advice once; a PC/SC
reader comes online once pcscd starts."""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from pathlib import Path

import pytest

from terminal.emulator.readers.pcsc_lab import SOCKET_ENV, PcscDaemon
from terminal.emulator.wallet import WalletEmulator
from tests.pcsc_lab import stopped_pcsc_daemon_fixture  # noqa: F401  (fixture)
from tests.terminal_lab import TerminalProcess, taptill, wait_for, write_config

FAILURE = re.compile(r"^(\S+ \S+) WARNING (\S+): (.*); retrying in (\d+) s \(failure (\d+) in a row\)$", re.M)
# What nfcpy itself logs on every attempt to open a device (nfc/clf/__init__.py).
NFCPY_ATTEMPT_LINES = ("searching for reader on path", "no reader available on path")


def _config(tmp_path: Path, server: WalletEmulator, reader: str) -> Path:
    config = write_config(tmp_path, server)
    config.write_text(config.read_text().replace('[reader]\nkind = "sim"', f"[reader]\n{reader}"))
    return config


def _three_failures(term: TerminalProcess) -> list[tuple[str, int, int]]:
    """Waits for the third failure; (detail, retry delay s, count) of each warning, checking by the log's
    own clock that each attempt waited at least the delay the one before announced (no upper bound: a
    loaded machine is slow)."""
    wait_for(lambda: len(FAILURE.findall(term.log())) >= 3, timeout=60, what="three failed attempts")
    matches = list(FAILURE.finditer(term.log()))
    at = [datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f") for m in matches]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(at)]
    # The log's clock has millisecond steps: allow one of them.
    assert gaps[0] >= 0.999 and gaps[1] >= 1.999, gaps
    return [(m[3], int(m[4]), int(m[5])) for m in matches]


def _reader_line(output: str, prefix: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith(prefix) or ln.split()[1:2] == ["reader"]]
    assert len(lines) == 1, output
    return lines[0]


def _check_status_and_doctor(config: Path, advice: str) -> None:
    """Both count every failed attempt so far (3 or more) and say ``advice`` once."""
    status = _reader_line(taptill("status", "--config", str(config)).stdout, "reader:")
    assert "OFFLINE since" in status, status
    assert int(re.findall(r"\((\d+) failures in a row\)", status)[0]) >= 3, status
    assert status.count(advice) == 1, status
    doctor = taptill("doctor", "--config", str(config), check=False)
    assert doctor.returncode == 1, doctor.stdout
    line = _reader_line(doctor.stdout, "FAIL reader")
    assert line.startswith("FAIL") and int(re.findall(r"\((\d+) failures in a row\)", line)[0]) >= 3, line
    assert line.count(advice) == 1 and "cable and driver" not in line, line  # its advice only, once


NFCPY_DEVICES = ["usb", "tty:AMA0:pn532"]


@pytest.mark.nfcpy
@pytest.mark.parametrize("device", NFCPY_DEVICES, ids=["usb", "uart"])
def test_an_nfcpy_reader_that_is_not_there_backs_off_logs_one_line_per_attempt_and_is_counted(
    tmp_path: Path, device: str
) -> None:
    with WalletEmulator.demo("doc") as server:
        config = _config(tmp_path, server, f'kind = "nfcpy"\ndevice = "{device}"')
        term = TerminalProcess(config)
        try:
            failures = _three_failures(term)
            _check_status_and_doctor(config, "check the cable and [reader] device")
        finally:
            assert term.stop() == 0
    log = term.log()
    assert [(delay, count) for _, delay, count in failures[:3]] == [(1, 1), (2, 2), (4, 3)], log
    # Every attempt up to the stop (more than three on a slow machine, while status and doctor ran).
    attempts = [(m[3], int(m[5])) for m in FAILURE.finditer(log)]
    assert [count for _, count in attempts] == list(range(1, len(attempts) + 1)), log
    for detail, _ in attempts:
        assert detail == f"no NFC reader found at {device!r}; check the cable and [reader] device", log
    # One line per attempt, all of them ours: nothing else about the reader, nothing of nfcpy's.
    reader_lines = [ln for ln in log.splitlines() if repr(device) in ln]
    assert len(reader_lines) == len(attempts), log
    assert not any(line in log for line in NFCPY_ATTEMPT_LINES), log
    assert "Traceback" not in log


@pytest.mark.pcsc
def test_a_pcsc_reader_without_pcscd_backs_off_is_counted_and_comes_online_when_pcscd_starts(
    tmp_path: Path, stopped_pcsc_daemon: PcscDaemon
) -> None:
    with WalletEmulator.demo("doc") as server:
        config = _config(tmp_path, server, 'kind = "pcsc"\nname = "PCD 00 00"')
        # libpcsclite reads the socket path once, at the process's first PC/SC call: set it at start.
        term = TerminalProcess(config, env={SOCKET_ENV: str(stopped_pcsc_daemon.socket_path)})
        try:
            failures = _three_failures(term)
            _check_status_and_doctor(config, "start it: systemctl start pcscd.socket")
            stopped_pcsc_daemon.start()

            def online() -> bool:
                status = taptill("status", "--config", str(config)).stdout
                return "reader:          online since" in status

            wait_for(online, timeout=60, what="the reader online once pcscd runs")
        finally:
            assert term.stop() == 0
    log = term.log()
    assert [(delay, count) for _, delay, count in failures[:3]] == [(1, 1), (2, 2), (4, 3)], log
    # Every attempt up to pcscd's start (more than three on a slow machine, while status and doctor ran).
    attempts = [(m[3], int(m[5])) for m in FAILURE.finditer(log)]
    assert [count for _, count in attempts] == list(range(1, len(attempts) + 1)), log
    for detail, _ in attempts:
        assert detail.startswith("PC/SC reader offline: pcscd is not available ("), log
    reader_lines = [ln for ln in log.splitlines() if "pcscd is not available" in ln]
    assert len(reader_lines) == len(attempts), log
    assert "Traceback" not in log
