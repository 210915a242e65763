"""The yourbarmate webhook under load while guests tap: request-to-200 at 20 events/s, and whether taps slow.

One terminal runs in this process (``InProcessTerminal``: the real ``run_terminal`` with its webhook in
the same event loop) with the espresso mapped to a yourbarmate product and counted in stock, so every tap
is approved and also counts its serving off the stock. Taps are measured first alone, then while the
sender emulator (``python -m terminal.emulator.yourbarmate --rate``, a process of its own as yourbarmate
is: in this one its work would hold the GIL the terminal's loop waits for) posts ~2 KB delivery events at
``events_per_s``, each committed durably before its 200. The journal lives in memory like the online tap
stage's: both figures are the firmware's own work, not a shared disk's fsync.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from terminal.bench.config import BIG_BALANCE_CENTS, bench_dir, espresso_id, write_bench_config
from terminal.bench.process import SOURCE_ROOT
from terminal.bench.stats import summary_ms
from terminal.bench.tap import CARD, InProcessTerminal
from terminal.config import load_config
from terminal.emulator.wallet import WalletEmulator
from terminal.journal import Journal
from terminal.screens import ApprovedScreen
from terminal.yourbarmate.config import StockProduct
from terminal.yourbarmate.stock import StockLedger, connect

USER, PASSWORD = "ybm", "bench-webhook-password"
PATH = "/hooks/yourbarmate"
STOCK_PIECES = 10**6  # the espresso counted in stock: no bench tap ever finds it sold out
SENDER_JOIN_S = 60.0  # after its run, the longest the sender may take for its last answers and report


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(workdir: Path, emulator: WalletEmulator, port: int) -> Path:
    password = workdir / "yourbarmate.password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    espresso = espresso_id(emulator)
    table = (
        f'\n[yourbarmate]\nlisten = "127.0.0.1:{port}"\npath = "{PATH}"\nusername = "{USER}"\n'
        f'password_file = "{password}"\n'
        f'[yourbarmate.products]\n"30" = {{ product = "{espresso}", serving_g = 8 }}\n'
    )
    return write_bench_config(workdir, emulator, extra=table)


def _stock_up(journal_path: Path, product: str) -> None:
    """A migrated journal with the espresso counted in stock, before the terminal starts."""
    Journal.open(journal_path).close()
    ledger = StockLedger(connect(journal_path), {"30": StockProduct(product, 8, "g")})
    try:
        ledger.set_count(product, STOCK_PIECES * 8)
    finally:
        ledger.close()


def _taps(terminal: InProcessTerminal, n: int | None, until: Callable[[], bool] | None = None) -> list[float]:
    """``n`` approved taps, or taps until ``until()``; their ms from UID to outcome screen."""
    out: list[float] = []
    while (n is not None and len(out) < n) or (until is not None and not until()):
        screen, ms = terminal.tap(CARD)
        if not (isinstance(screen, ApprovedScreen) and screen.confirmed):
            raise RuntimeError(f"a webhook-bench tap was not approved online ({ms:.0f} ms): {screen!r}")
        out.append(ms)
    return out


def measure_webhook(
    taps: int = 300, events_per_s: float = 20.0, duration_s: float = 10.0, warmup: int = 5
) -> dict[str, Any]:
    """``webhook_ms`` {p50, p99, max}: request to 200 of events sent at ``events_per_s`` for
    ``duration_s`` s while taps go on; ``tap_webhook_ms`` {quiet, loaded}: tap p50/p99 (ms) with no
    webhook traffic (``taps`` taps) and under it (as many as fit in the run). Raises RuntimeError when
    an event is not answered 200 or a tap is not approved."""
    workdir = bench_dir("taptill-bench-webhook-", memory=True)
    try:
        with WalletEmulator("doc", wallets={CARD: BIG_BALANCE_CENTS}) as emulator:
            port = _free_port()
            cfg = load_config(_config(workdir, emulator, port))
            _stock_up(cfg.journal_path, str(espresso_id(emulator)))
            with InProcessTerminal(cfg) as terminal:
                _taps(terminal, warmup)
                # Half the quiet taps before the load and half after: a machine whose other load
                # drifts during the run weighs on both figures alike.
                quiet = _taps(terminal, taps // 2)
                sender = _sender(f"http://127.0.0.1:{port}{PATH}", workdir, events_per_s, duration_s)
                try:
                    loaded = _taps(terminal, None, until=lambda: sender.poll() is not None)
                    out, _ = sender.communicate(timeout=SENDER_JOIN_S)
                finally:
                    if sender.poll() is None:
                        sender.kill()
                        sender.wait()
                quiet += _taps(terminal, taps - taps // 2)
        rate = _rate_report(out, sender.returncode)
        return {
            "webhook_ms": {
                **rate["latency_ms"],
                "events": rate["sent"],
                "events_per_s": events_per_s,
                "late_ms_max": rate["late_ms_max"],
            },
            "tap_webhook_ms": {
                "quiet": {**summary_ms(quiet), "taps": len(quiet)},
                "loaded": {**summary_ms(loaded), "taps": len(loaded)},
            },
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _sender(url: str, workdir: Path, events_per_s: float, duration_s: float) -> subprocess.Popen[str]:
    """The sender emulator's rate run, this checkout's code, its JSON report on stdout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(SOURCE_ROOT), env.get("PYTHONPATH"))))
    argv = [
        *(sys.executable, "-m", "terminal.emulator.yourbarmate", "--url", url, "--username", USER),
        *("--password-file", str(workdir / "yourbarmate.password"), "--rate", f"{events_per_s:g}"),
        *("--duration-s", f"{duration_s:g}", "--max-attempts", "3", "--backoff-s", "0.2", "--seed", "15"),
    ]
    proc = subprocess.Popen(
        argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    )
    # yourbarmate is another machine: here it must not take turns with the terminal's loop under the
    # stage's real-time priority (which it inherits), only use the CPU the terminal leaves. At normal
    # priority it also waited behind a test suite's processes before it could send an event or read its
    # 200 off the socket, and those waits counted in webhook_ms as if the terminal had been slow (a p99
    # over 100 ms beside the suite, issue 10): one real-time priority below the terminal's it still
    # yields to the terminal, never to the neighbours. Without real-time priority (not root) it runs
    # at normal priority like everything else.
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: not Linux
        if os.sched_getscheduler(0) == os.SCHED_RR:
            below = max(os.sched_get_priority_min(os.SCHED_RR), os.sched_getparam(0).sched_priority - 1)
            os.sched_setscheduler(proc.pid, os.SCHED_RR, os.sched_param(below))
        else:
            os.sched_setscheduler(proc.pid, os.SCHED_OTHER, os.sched_param(0))
    return proc


def _rate_report(out: str, returncode: int | None) -> dict[str, Any]:
    """The sender's ``rate`` report; RuntimeError unless every event was answered 200 (and only 200)."""
    try:
        report = json.loads(out.strip().splitlines()[-1])
        rate, statuses = report["rate"], report["summary"]["statuses"]
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise RuntimeError(
            f"the sender (exit {returncode}) printed no report: {exc}; {out[-300:]!r}"
        ) from None
    if set(statuses) != {"200"} or rate["delivered"] != rate["sent"] or not rate["latency_ms"]:
        raise RuntimeError(f"not every event was answered 200: {statuses}")
    return dict(rate)
