"""The systemd unit (verify, offline security score) and the sd_notify protocol of ``taptill run``."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.emulator.wallet import WalletEmulator
from tests.terminal_lab import REPO, TerminalProcess, wait_for, write_config

pytestmark = pytest.mark.systemd

UNIT = REPO / "systemd" / "taptill.service"
MAX_EXPOSURE = 2.0
WATCHDOG_USEC = 400_000  # pings every 0.2 s


def checkable_copy(unit: Path, directory: Path) -> Path:
    """The unit with its binaries pointed at ones that exist here (verify fails on a missing ExecStart)."""
    text = unit.read_text()
    text = text.replace("/usr/bin/taptill", sys.executable).replace("/usr/bin/python3", sys.executable)
    copy = directory / "taptill.service"
    copy.write_text(text)
    return copy


def systemd_analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool is not None, "systemd-analyze is missing: apt-get install systemd"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def exposure(unit: Path) -> float:
    out = systemd_analyze("security", "--offline=yes", "--no-pager", str(unit), cwd=unit.parent).stdout
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out)
    assert match, f"no exposure level in systemd-analyze output:\n{out}"
    return float(match.group(1))


def test_unit_verifies_without_any_warning(tmp_path: Path) -> None:
    copy = checkable_copy(UNIT, tmp_path)
    proc = systemd_analyze("verify", "--man=no", str(copy), cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_verify_catches_a_typo(tmp_path: Path) -> None:
    """The check above can fail: a misspelt directive only warns, and that warning is caught."""
    copy = checkable_copy(UNIT, tmp_path)
    copy.write_text(copy.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    proc = systemd_analyze("verify", "--man=no", str(copy), cwd=tmp_path)
    assert "ProtectSytem" in proc.stderr


def test_offline_security_exposure_is_at_most_2_0(tmp_path: Path) -> None:
    level = exposure(checkable_copy(UNIT, tmp_path))
    assert level <= MAX_EXPOSURE, f"exposure {level} > {MAX_EXPOSURE}"


def test_security_score_reacts_to_hardening(tmp_path: Path) -> None:
    """Dropping the hardening must raise the score above the limit (the parser reads the real number)."""
    copy = checkable_copy(UNIT, tmp_path)
    kept = [
        line
        for line in copy.read_text().splitlines()
        if not line.startswith(("Protect", "Restrict", "SystemCall", "Capability", "Private", "User="))
    ]
    copy.write_text("\n".join(kept) + "\n")
    assert exposure(copy) > MAX_EXPOSURE


def test_unit_declares_the_service_contract() -> None:
    service: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            service.setdefault(key, []).append(value)
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["Restart"] == ["always"]
    assert service["User"] == ["taptill"]
    assert service["StateDirectory"] == ["taptill"]
    assert service["ConfigurationDirectory"] == ["taptill"]
    assert service["RuntimeDirectory"] == ["taptill"]  # the sim socket default is /run/taptill/tap.sock
    assert "wallet.token:/etc/taptill/wallet.token" in service["LoadCredential"]
    assert service["DevicePolicy"] == ["closed"]
    # GPIO: lgpio alone (its /dev/gpiochip*), its FIFO in the RuntimeDirectory; no core dump of secrets.
    env = dict(word.split("=", 1) for value in service["Environment"] for word in value.split())
    assert env["GPIOZERO_PIN_FACTORY"] == "lgpio"
    assert env["LG_WD"] == f"/run/{service['RuntimeDirectory'][0]}"
    assert "char-gpiochip rw" in service["DeviceAllow"]
    assert not [d for d in service["DeviceAllow"] if "gpiomem" in d or d.startswith("/dev/mem")]
    assert (
        "ProcSubset" not in service
    )  # gpiozero reads the Pi's revision from /proc/device-tree, /proc/cpuinfo
    assert service["LimitCORE"] == ["0"]
    assert service["LimitNOFILE"] == ["4096"]  # room over the inbound servers' caps (terminal.net.inbound)
    # Room for the sale under way to be decided and dispensed, then the outbox's grace, before a kill.
    from terminal.service.run import SHUTDOWN_GRACE_S, STOP_DRAIN_S

    stop_s = int(service["TimeoutStopSec"][0].rstrip("s"))
    assert STOP_DRAIN_S + SHUTDOWN_GRACE_S + 3 <= stop_s <= 30
    assert service["ExecStart"][0].split()[1:] == ["run", "--config", "/etc/taptill/config.toml"]


# --- sd_notify ----------------------------------------------------------------------------------


class NotifySocket:
    """The systemd side of sd_notify: a datagram socket collecting (arrival time, message)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def received(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self.messages)

    def times_of(self, field: str) -> list[float]:
        return [t for t, m in self.received() if field in m.split("\n")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()


def start_terminal(
    tmp_path: Path, emulator: WalletEmulator, notify: NotifySocket, *, stall: bool = False
) -> TerminalProcess:
    """``taptill run`` as systemd starts it; ``stall``: with the sim reader's stall verb allowed."""
    config = write_config(tmp_path / "t", emulator)
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(WATCHDOG_USEC), "JOURNAL_STREAM": "8:1"}
    if stall:
        env["TAPTILL_TEST_STALL"] = "1"
    return TerminalProcess(config, env=env)


def test_ready_with_status_then_watchdog_pings(tmp_path: Path, notify: NotifySocket) -> None:
    with WalletEmulator.demo("doc") as emulator:
        term = start_terminal(tmp_path, emulator, notify)
        try:
            wait_for(lambda: len(notify.times_of("WATCHDOG=1")) >= 5, what="five WATCHDOG=1 pings")
            ready = [m for _, m in notify.received() if "READY=1" in m.split("\n")]
            assert len(ready) == 1
            assert any(line.startswith("STATUS=") for line in ready[0].split("\n"))
            assert term.alive()
        finally:
            code = term.stop()
        log = term.log()
    assert code == 0
    # journald form: every line has a priority prefix and no timestamp of its own; no token anywhere.
    lines = [line for line in log.splitlines() if line.strip()]
    assert lines and all(re.match(r"<[0-7]>\S", line) for line in lines), log
    assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", log)
    assert emulator.api_token not in log


def test_a_stalled_loop_stops_the_watchdog_pings(tmp_path: Path, notify: NotifySocket) -> None:
    stall_s = 4.0
    with WalletEmulator.demo("doc") as emulator:
        term = start_terminal(tmp_path, emulator, notify, stall=True)
        try:
            wait_for(lambda: len(notify.times_of("WATCHDOG=1")) >= 3, what="pings before the stall")
            assert term.send(f"stall {stall_s:g}") == "ok"
            asked = time.monotonic()
            wait_for(
                lambda: any(t > asked + stall_s for t in notify.times_of("WATCHDOG=1")),
                timeout=stall_s + 15,
                what="pings after the stall",
            )
            wait_for(
                lambda: sum(t > asked + stall_s for t in notify.times_of("WATCHDOG=1")) >= 3,
                what="pings resuming",
            )
            pings = notify.times_of("WATCHDOG=1")
            # The loop sleeps from (about) the moment the reader said ok: a margin at each end of the
            # stall absorbs scheduling delay on a busy machine; in between, a live loop pings 10 times.
            during = [t for t in pings if asked + 1.0 < t < asked + stall_s - 0.2]
            assert during == [], f"{len(during)} pings while the loop was hung"
            assert term.alive()
        finally:
            code = term.stop()
    assert code == 0


def test_sigterm_sends_stopping_and_exits_0_within_5_s(tmp_path: Path, notify: NotifySocket) -> None:
    with WalletEmulator.demo("doc") as emulator:
        term = start_terminal(tmp_path, emulator, notify)
        wait_for(lambda: bool(notify.times_of("WATCHDOG=1")), what="first ping")
        sent = time.monotonic()
        term.proc.send_signal(signal.SIGTERM)
        code = term.wait_dead(timeout=5.0)  # idle: nothing under way to finish before stopping
        took = time.monotonic() - sent
    assert code == 0
    stopping = notify.times_of("STOPPING=1")
    assert len(stopping) == 1 and stopping[0] >= sent
    assert "taptill stopped" in term.log()
    print(f"SIGTERM to exit: {took:.2f} s")


def test_relay_reset_returns_the_relay_pin_to_a_released_input() -> None:
    """What ExecStopPost runs after a SIGKILL: every driven relay line becomes an input with its pull."""
    from gpiozero.pins.mock import MockFactory

    from provisioning.relay_reset import reset_relays
    from terminal.config import GpioConfig

    factory = MockFactory()
    pin = factory.pin(17)
    pin.function = "output"
    pin.state = True  # as a SIGKILLed sale left it: relay closed
    assert reset_relays(GpioConfig(enabled=True, relay_pin=17), pin_factory=factory) == (17,)
    assert (pin.function, pin.pull) == ("input", "down")
    low_board = factory.pin(27)
    low_board.function = "output"
    reset_relays(GpioConfig(enabled=True, relay_pin=27, relay_active_high=False), pin_factory=factory)
    assert (low_board.function, low_board.pull) == ("input", "up")
    assert reset_relays(GpioConfig(enabled=False, relay_pin=17)) == ()
    # a relay per product: each product's relay is released too, not only the default one
    per_product = [factory.pin(n) for n in (20, 21)]
    for relay in per_product:
        relay.function, relay.state = "output", True
    cfg = GpioConfig(enabled=True, relays={"espresso": 20, "cappuccino": 21, "ristretto": 20})
    assert reset_relays(cfg, pin_factory=factory) == (20, 21)
    assert [(r.function, r.pull) for r in per_product] == [("input", "down")] * 2
