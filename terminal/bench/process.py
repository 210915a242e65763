"""``taptill run`` as a real subprocess: start-up time, CPU per tap, peak RSS after taps, idle CPU."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import terminal
from hw.readers.sim import send_command
from terminal.bench.config import BIG_BALANCE_CENTS, write_bench_config
from terminal.emulator.wallet import WalletEmulator

READY_LINE = "taptill ready"
READY_TIMEOUT_S = 20.0
TAP_TIMEOUT_S = 3.0
WARMUP_TAPS = 5  # the first taps open the connection and import what is loaded lazily
SETTLE_S = 1.0  # after the last tap: its screen timer, its journal writes and an outbox round are over
# CPU per tap is the median of this many `taptill run` processes: on a 2-core machine shared with a test
# suite one process's figure strays by 15-20 % either way (cold caches after the neighbours ran, whose
# process it is matters as much as when), and the median of three keeps one stray run from deciding.
CPU_REPEATS = 3
IDLE_RATE_S = 2.0  # each repeat's own idle window, whose CPU rate is taken off its taps' CPU
CARD = "04C0C0C0C0C0C0"
# The checkout the bench runs from: the subprocess must run this code, not whichever `terminal` the
# venv's editable install points at (another worktree of the same repository, say).
SOURCE_ROOT = Path(terminal.__file__).resolve().parent.parent


class TerminalSubprocess:
    """``python -m terminal run --config PATH``; its output is drained on a thread and kept for errors."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.socket = config.parent / "state" / "tap.sock"
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.ready_at = 0.0
        self._cpu_clock: int | None = None
        env = dict(os.environ)
        env.pop("TAPTILL_CRASHPOINT", None)
        env.pop("JOURNAL_STREAM", None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(SOURCE_ROOT), env.get("PYTHONPATH"))))
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "terminal", "run", "--config", str(config)],
            cwd=config.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._drain, name="bench-run-output", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if not self.ready.is_set() and READY_LINE in line:
                self.ready_at = time.perf_counter()
                self.ready.set()
            self.lines.append(line)

    def wait_ready(self) -> float:
        """Seconds from process start to the ready log line."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                output = "\n".join(self.lines[-20:])
                raise RuntimeError(f"taptill run did not get ready (exit {self.proc.returncode}):\n{output}")
        return self.ready_at - self.started_at

    def cpu_seconds(self) -> float:
        """CPU time of the whole process (every thread, also those that ended), to the nanosecond.

        Read through its process CPU clock (clock_getcpuclockid(3), the scheduler's own sum), not
        /proc/PID/stat's utime + stime, which come in 10 ms ticks: about 2 % of 200 taps' CPU.
        """
        if self._cpu_clock is None:
            self._cpu_clock = process_cpu_clock(self.proc.pid)
        return time.clock_gettime(self._cpu_clock)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc/PID/status; the bench needs Linux")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        return code


def process_cpu_clock(pid: int) -> int:
    """The clock id of process ``pid``'s CPU time, for ``time.clock_gettime``; OSError when it is gone."""
    libc = ctypes.CDLL(None, use_errno=True)
    clock = ctypes.c_int()  # clockid_t
    err = libc.clock_getcpuclockid(pid, ctypes.byref(clock))
    if err:
        raise OSError(err, f"no CPU clock for process {pid}: {os.strerror(err)}")
    return clock.value


def measure_startup(runs: int = 5) -> float:
    """Median seconds from ``taptill run`` process start to its ready line (journal already created)."""
    workdir = Path(tempfile.mkdtemp(prefix="taptill-bench-start-"))
    try:
        with WalletEmulator("doc", wallets={CARD: BIG_BALANCE_CENTS}) as emulator:
            config = write_bench_config(workdir, emulator)
            times = []
            for _ in range(runs):
                proc = TerminalSubprocess(config)
                try:
                    times.append(proc.wait_ready())
                finally:
                    proc.stop()
        return round(statistics.median(times), 3)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _tap_until_booked(proc: TerminalSubprocess, emulator: WalletEmulator, booked: int) -> None:
    """Tap once and wait for the debit on the emulator; tap again if it landed while a sale was busy."""
    for _ in range(3):
        answer = send_command(proc.socket, f"tap {CARD}")
        if answer != "ok":
            raise RuntimeError(f"the sim reader refused the tap: {answer}")
        deadline = time.monotonic() + TAP_TIMEOUT_S
        while time.monotonic() < deadline:
            if len(emulator.transactions()) > booked:
                time.sleep(0.02)  # let the terminal show the outcome before the next tap
                return
            time.sleep(0.002)
    raise RuntimeError(f"tap {booked + 1} was not booked on the emulator")


def measure_process(taps: int = 200, idle_s: float = 10.0, repeats: int = CPU_REPEATS) -> dict[str, Any]:
    """``repeats`` ``taptill run`` processes: ``tap_cpu_ms`` (their median; each one's figure in
    ``tap_cpu_ms_repeats``), the first one's peak RSS (MB) after its taps and its idle CPU (%) over
    ``idle_s``.

    ``tap_cpu_ms`` is the CPU time (user + system) the terminal process spends per approved online tap,
    over ``taps`` taps after WARMUP_TAPS: every thread of it (the device loop with the balance GET, the
    durable journal writes and the debit POST, the sim reader's thread that takes the tap, the loop lag
    watcher, the log lines), up to the tap's last journal write and its screens, less what the same
    process spends idle over the same wall time (its rate from an idle window measured afterwards). The
    wallet emulator runs in the bench's process and is not counted.
    """
    if taps < 1 or repeats < 1:
        raise ValueError(f"taps and repeats must be at least 1, got {taps} and {repeats}")
    runs = [_one_process(taps, idle_s if i == 0 else min(idle_s, IDLE_RATE_S)) for i in range(repeats)]
    cpu = [run[0] for run in runs]
    _, rss_mb, idle_rate = runs[0]
    return {
        "tap_cpu_ms": round(statistics.median(cpu), 2),
        "tap_cpu_ms_repeats": [round(ms, 2) for ms in cpu],
        "rss_mb": round(rss_mb, 1),
        "idle_cpu_pct": round(100 * idle_rate, 2),
    }


def _one_process(taps: int, idle_s: float) -> tuple[float, float, float]:
    """One ``taptill run``: (CPU ms per tap, peak RSS MB after the taps, idle CPU rate over ``idle_s``)."""
    workdir = Path(tempfile.mkdtemp(prefix="taptill-bench-proc-"))
    try:
        with WalletEmulator("doc", wallets={CARD: BIG_BALANCE_CENTS}) as emulator:
            proc = TerminalSubprocess(write_bench_config(workdir, emulator))
            try:
                proc.wait_ready()
                for i in range(WARMUP_TAPS):
                    _tap_until_booked(proc, emulator, i)
                time.sleep(SETTLE_S)
                booked_before = len(emulator.transactions())
                cpu_before, wall_before = proc.cpu_seconds(), time.perf_counter()
                for i in range(taps):
                    _tap_until_booked(proc, emulator, booked_before + i)
                time.sleep(SETTLE_S)
                tap_cpu = proc.cpu_seconds() - cpu_before
                tap_wall = time.perf_counter() - wall_before
                booked = len(emulator.transactions()) - booked_before
                rss_mb = proc.peak_rss_mb()
                cpu_before, wall_before = proc.cpu_seconds(), time.perf_counter()
                time.sleep(idle_s)
                idle_cpu = proc.cpu_seconds() - cpu_before
                idle_wall = time.perf_counter() - wall_before
                if proc.proc.poll() is not None:
                    raise RuntimeError(f"taptill run died during the benchmark (exit {proc.proc.returncode})")
            finally:
                proc.stop()
        idle_rate = idle_cpu / idle_wall
        return max(0.0, tap_cpu - idle_rate * tap_wall) / booked * 1000, rss_mb, idle_rate
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
