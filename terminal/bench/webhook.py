"""The yourbarmate webhook under load while guests tap: request-to-200 at 20 events/s, and whether taps slow.

One terminal runs in this process (``InProcessTerminal``: the real ``run_terminal`` with its webhook in
the same event loop) with the espresso mapped to a yourbarmate product and counted in stock, so every tap
is approved and also reads the stock figures. Taps are measured first alone, then while the sender
emulator (``Sender.send_rate``, from its own thread and loop) posts ~3 KB delivery events at
``events_per_s``, each committed durably before its 200. The journal lives in memory like the online tap
stage's: both figures are the firmware's own work, not a shared disk's fsync.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import threading
from pathlib import Path
from typing import Any

from terminal.bench.config import BIG_BALANCE_CENTS, bench_dir, espresso_id, write_bench_config
from terminal.bench.stats import summary_ms
from terminal.bench.tap import CARD, InProcessTerminal
from terminal.config import load_config
from terminal.emulator.wallet import WalletEmulator
from terminal.emulator.yourbarmate.scenario import rate_event
from terminal.emulator.yourbarmate.sender import RateReport, Sender
from terminal.journal import Journal
from terminal.screens import ApprovedScreen
from terminal.yourbarmate.config import StockProduct
from terminal.yourbarmate.stock import StockLedger, connect

USER, PASSWORD = "ybm", "bench-webhook-password"
PATH = "/hooks/yourbarmate"
STOCK_PIECES = 10**6  # the espresso counted in stock: no bench tap ever finds it sold out
SENDER_JOIN_S = 120.0  # the sender's whole run: its duration and the last answers


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


def _taps(terminal: InProcessTerminal, n: int | None, until: threading.Event | None = None) -> list[float]:
    """``n`` approved taps, or taps until ``until`` is set; their ms from UID to outcome screen."""
    out: list[float] = []
    while (n is not None and len(out) < n) or (until is not None and not until.is_set()):
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
                quiet = _taps(terminal, taps)
                done = threading.Event()
                result: list[RateReport | BaseException] = []
                url = f"http://127.0.0.1:{port}{PATH}"
                sender = threading.Thread(
                    target=_send, args=(url, events_per_s, duration_s, result, done), name="bench-ybm"
                )
                sender.start()
                try:
                    loaded = _taps(terminal, None, until=done)
                finally:
                    sender.join(SENDER_JOIN_S)
        if not result or isinstance(result[0], BaseException):
            raise RuntimeError(f"the sender did not finish: {result[0] if result else 'no result'!r}")
        report = result[0]
        answered = [a.latency_ms for s in report.sent for a in s.attempts if a.status == 200]
        failed = [s.status for s in report.sent if s.status != 200]
        if failed or not answered:
            raise RuntimeError(f"{len(failed)} of {len(report.sent)} events not answered 200: {failed[:5]}")
        if not loaded:
            raise RuntimeError("no tap was made while the webhook was loaded")
        return {
            "webhook_ms": {
                **summary_ms(answered, with_max=True),
                "events": len(report.sent),
                "events_per_s": events_per_s,
                "late_ms_max": round(report.late_ms_max, 2),
            },
            "tap_webhook_ms": {
                "quiet": {**summary_ms(quiet), "taps": len(quiet)},
                "loaded": {**summary_ms(loaded), "taps": len(loaded)},
            },
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _send(
    url: str,
    events_per_s: float,
    duration_s: float,
    result: list[RateReport | BaseException],
    done: threading.Event,
) -> None:
    """The sender's thread: one rate run on a loop of its own; its report (or error) into ``result``."""
    rng = random.Random(15)

    async def run() -> RateReport:
        async with Sender(url, USER, PASSWORD, max_attempts=3, backoff_s=0.2, rng=rng) as sender:
            return await sender.send_rate(events_per_s, duration_s, lambda i: rate_event(700_000 + i, rng))

    try:
        result.append(asyncio.run(run()))
    except BaseException as exc:  # reported by measure_webhook
        result.append(exc)
    finally:
        done.set()
