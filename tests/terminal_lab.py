"""Test rig: writes terminal configs for the emulators and runs ``taptill run`` as a real subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from terminal.controller.operators import card_entry, pin_entry
from terminal.emulator.terminal_config import espresso_id, write_terminal_config
from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal, SaleRecord
from terminal.model import ProductId
from terminal.ops.operator_card import create_operator_key, operator_line

REPO = Path(__file__).resolve().parent.parent
MAX = "04A1B2C3D4E5F6"  # 2000 cents in the demo wallets
ERIKA = "0455667788AABB"  # 500 cents
SMALL = "DEADBEEF"  # 100 cents
EMPTY = "04000000000001"  # 0 cents
STRANGER = "04BADC0FFEE000"  # no wallet


@contextlib.contextmanager
def local_zone(tz: str) -> Iterator[None]:
    """The process's local time zone set to ``tz`` (a POSIX TZ value) for the block, then as it was."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = tz
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def espresso(flavour: str) -> str | int:
    """The espresso product id as each flavour lists it (pretix ids are integers)."""
    return espresso_id(flavour)


def journal_sale(
    journal: Journal,
    products: Sequence[ProductId],
    amount_cents: int,
    *,
    uid: str = MAX,
    offline: bool = False,
    description: str = "Bar",
    **fields: Any,
) -> SaleRecord:
    """A sale journaled as the tap path journals one, for tests that build a journal by hand: no tag,
    online unless ``offline``; ``fields`` go to ``Journal.record_sale`` as they are (approved, …)."""
    return journal.record_sale(
        token_id=uid,
        products=products,
        amount_cents=amount_cents,
        description=description,
        tag=None,
        offline=offline,
        **fields,
    )


def write_config(
    directory: Path,
    emulator: WalletEmulator,
    *,
    products: Sequence[str | int] | None = None,
    extra: str = "",
    offline_mode: str = "accept",
    budget_ms: int = 800,
    probe_s: float = 0.2,
    mode: str = "tap",
    display: str = "none",
    timeout_s: float = 1.5,
    screen_hold_s: float = 0.05,
    retap_guard_s: float | None = 0.0,
) -> Path:
    """A complete terminal config (sim reader, no display) and a 0600 token file in ``directory``.

    The re-tap guard is off unless asked for: most tests sell to one card again within seconds.
    """
    return write_terminal_config(
        directory,
        emulator,
        products=products,
        extra=extra,
        offline_mode=offline_mode,
        tap_budget_ms=budget_ms,
        probe_interval_s=probe_s,
        mode=mode,
        display=display,
        timeout_s=timeout_s,
        screen_hold_s=screen_hold_s,
        retap_guard_s=retap_guard_s,
    )


def kiosk_operators(folder: Path, cards: dict[str, str]) -> tuple[str, str]:
    """A kiosk's operators as the config holds them: the ``operator_key_file`` line for [topup] (a fresh
    0600 key in ``folder``) and the [topup.operators] table with one line per name → card UID."""
    key = folder / "operator.key"
    create_operator_key(key)
    lines = "\n".join(operator_line(key, name, uid) for name, uid in cards.items())
    return f'operator_key_file = "{key}"', f"[topup.operators]\n{lines}\n"


def pin_kiosk(folder: Path, name: str, card_uid: str, pin: Sequence[str], **settings: float) -> str:
    """A kiosk's [topup] and [topup.operators] for one operator ``name`` who unlocks with ``card_uid`` and
    then ``pin`` (button names, ten/twenty/clear), both keyed under a fresh 0600 key in ``folder``;
    ``settings`` are further [topup] keys (pin_attempts, pin_lockout_s, max_credit_per_shift_cents)."""
    key_line, _ = kiosk_operators(folder, {})
    key = bytes.fromhex((folder / "operator.key").read_text())
    entry = f'{name} = {{ card = "{card_entry(key, card_uid)}", pin = "{pin_entry(key, name, pin)}" }}'
    more = "".join(f"{setting} = {value}\n" for setting, value in settings.items())
    return (
        f"\n[topup]\n{key_line}\n"
        'buttons = { ten = "topup_10", twenty = "topup_20" }\n'
        'clear_button = "clear"\n'
        f"pin_required = true\npin_length = {len(pin)}\n{more}"
        f"[topup.operators]\n{entry}\n"
    )


def faketime_env(offset_file: Path) -> dict[str, str]:
    """Environment that runs a process under libfaketime (Debian ``faketime``) with its wall clock offset
    by what ``offset_file`` says ("+0", "+1d", "-1d"; read anew at every call), while its monotonic and
    boot-time clocks run untouched: a Pi's clock stepped by fake-hwclock and NTP."""
    import glob

    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    assert found, "libfaketime is missing: apt-get install faketime (make test installs it)"
    if not offset_file.exists():
        offset_file.write_text("+0\n")
    return {
        "LD_PRELOAD": found[0],
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_NO_CACHE": "1",
        "DONT_FAKE_MONOTONIC": "1",
    }


def taptill(
    *args: str, timeout: float = 30.0, check: bool = True, prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run the ``taptill`` CLI (as ``python -m terminal``, after ``prefix``) and return its output."""
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "terminal", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"taptill {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def journal_lines(config: Path) -> list[dict[str, Any]]:
    out = taptill("journal", "--json", "--config", str(config)).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


class TerminalProcess:
    """``taptill run`` in a subprocess, fed taps through its sim reader socket.

    Every one started is killed by ``kill_leftovers`` after its test (tests/conftest.py), so a test that
    fails while its terminal runs (or hangs) never leaves a process loading the machine for the rest.
    """

    started: ClassVar[list[TerminalProcess]] = []

    def __init__(
        self,
        config: Path,
        env: dict[str, str] | None = None,
        *,
        wait: bool = True,
        socket: Path | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.crashpoint = (env or {}).get("TAPTILL_CRASHPOINT")
        self.socket = socket or config.parent / "state" / "tap.sock"  # socket: when [reader] socket differs
        self.log_path = config.parent / f"run-{time.monotonic_ns()}.log"
        full_env = dict(os.environ)
        full_env.pop("TAPTILL_CRASHPOINT", None)
        full_env.update(env or {})
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "terminal", "run", "--config", str(config)],  # prefix: setpriv …
            cwd=REPO,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        TerminalProcess.started.append(self)
        if wait:
            self.wait_ready()

    @classmethod
    def kill_leftovers(cls) -> int:
        """SIGKILL every terminal still running; how many there were."""
        left = [t for t in cls.started if t.alive()]
        for term in left:
            term.proc.kill()
            term.proc.wait(timeout=10)
        for term in cls.started:
            term._log.close()
        cls.started.clear()
        return len(left)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"taptill run exited {self.proc.returncode}:\n{self.log()}")
            if "taptill ready" in self.log():
                return
            time.sleep(0.02)
        raise AssertionError(f"taptill run not ready in {timeout}s:\n{self.log()}")

    def send(self, line: str) -> str:
        from hw.readers.sim import send_command

        return send_command(self.socket, line)

    def tap(self, uid: str) -> None:
        """``tap UID``, answered "ok"; with a crash point armed the process may die before it answers."""
        try:
            answer = self.send(f"tap {uid}")
        except ConnectionError:
            # Killed before it answered: with the line unread the kernel resets the connection, with it
            # read (the tap's crash point fired before the socket's thread wrote "ok", as a busy machine
            # runs the device loop first) it closes it; the answer is lost with the process, which is
            # what the test is about.
            if self.crashpoint is not None and self.wait_dead() == -9:
                return
            raise
        assert answer == "ok", answer

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()

    def stop(self, timeout: float = 10.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def wait_dead(self, timeout: float = 10.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code


def wait_for(predicate: Any, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def settled(config: Path, count: int) -> bool:
    """``count`` taps are in the journal and none is pending."""
    lines = journal_lines(config)
    return len(lines) >= count and all(line["state"] != "pending" for line in lines)
