"""Tap latency through the real stack: sim reader socket → DeviceLoop → WalletClient → wallet emulator.

Online taps are interleaved with the same debit POST made alone with httpx (the floor), so a busy
machine slows both alike; offline taps run against an emulator that accepts TCP but never answers.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import quote

import httpx

from hw.readers.sim import send_command
from terminal.app import RunOptions, run_terminal
from terminal.bench_config import BIG_BALANCE_CENTS, espresso_id, write_bench_config
from terminal.bench_stats import summary_ms
from terminal.config import Config, load_config
from terminal.device_loop import DeviceLoop
from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet_server import WalletEmulator
from terminal.journal import new_idempotency_key
from terminal.screens import (
    ApprovedScreen,
    DeclinedScreen,
    IdleScreen,
    NotRegisteredScreen,
    OfflineScreen,
    OutOfServiceScreen,
    Screen,
)

CARD = "04B0B0B0B0B0B0"
STEP_TIMEOUT_S = 10.0
RAW_POST_DEADLINE_S = 5.0  # the floor's POST, connect to last body byte, like every request of ours
OUTCOMES = (ApprovedScreen, DeclinedScreen, NotRegisteredScreen, OutOfServiceScreen)


class RecordingDisplay:
    """A Display that timestamps every screen it is given (perf_counter), for the tap timings."""

    def __init__(self) -> None:
        self.shown: list[tuple[Screen, float]] = []
        self._cond = threading.Condition()

    def show(self, screen: Screen) -> None:
        at = time.perf_counter()
        with self._cond:
            self.shown.append((screen, at))
            self._cond.notify_all()

    def close(self) -> None:
        pass

    def mark(self) -> int:
        with self._cond:
            return len(self.shown)

    def wait_for(self, start: int, accept: Callable[[Screen], bool], timeout: float) -> tuple[Screen, float]:
        """The first screen from index ``start`` on that ``accept`` takes, with when it was shown."""
        with self._cond:
            found: list[tuple[Screen, float]] = []

            def seen() -> bool:
                found[:] = [(s, t) for s, t in self.shown[start:] if accept(s)][:1]
                return bool(found)

            if not self._cond.wait_for(seen, timeout=timeout):
                raise TimeoutError(f"the terminal showed no matching screen within {timeout} s")
            return found[0]


class InProcessTerminal:
    """``run_terminal`` on its own thread and asyncio loop, with a RecordingDisplay; a context manager."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.display = RecordingDisplay()
        self.device: DeviceLoop | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="bench-terminal", daemon=True)

    def __enter__(self) -> InProcessTerminal:
        self._thread.start()
        while not self._ready.wait(0.05):
            if not self._thread.is_alive():
                raise RuntimeError(f"the terminal did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=15)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by __enter__ when start-up fails
            self._error = exc

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()

        def ready(device: DeviceLoop) -> None:
            self.device = device
            self._ready.set()

        opts = RunOptions(display=self.display, on_ready=ready, install_signal_handlers=False)
        await run_terminal(self.cfg, self._stop, opts)

    def tap(self, uid: str) -> tuple[Screen, float]:
        """Tap ``uid``; its outcome screen and the ms from sending the tap to that screen.

        Waits for the idle screen afterwards, so every tap starts from a resting terminal.
        """
        start = self.display.mark()
        sent = time.perf_counter()
        answer = send_command(self.cfg.reader.socket, f"tap {uid}")
        if answer != "ok":
            raise RuntimeError(f"the sim reader refused the tap: {answer}")
        screen, shown = self.display.wait_for(start, lambda s: isinstance(s, OUTCOMES), STEP_TIMEOUT_S)
        after = self.display.mark()
        self.display.wait_for(after - 1, lambda s: isinstance(s, IdleScreen | OfflineScreen), STEP_TIMEOUT_S)
        return screen, (shown - sent) * 1000


class RawPoster:
    """The tap's debit POST made alone with httpx's AsyncClient on a kept-alive connection: the floor."""

    def __init__(self, emulator: WalletEmulator, trailing_slash: bool) -> None:
        slash = "/" if trailing_slash else ""
        self.url = f"{emulator.base_url}/pos/wallets/token/{quote(CARD, safe='')}/transactions{slash}"
        self.product = espresso_id(emulator)
        self._loop = asyncio.new_event_loop()
        self._http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {emulator.api_token}", "Accept": "application/json"},
            timeout=RAW_POST_DEADLINE_S,
        )

    def post_ms(self) -> float:
        body = {"products": [self.product], "description": "Kaffee (bench)", "tag": "coffee"}
        body["idempotency_key"] = new_idempotency_key()
        start = time.perf_counter()
        resp = self._loop.run_until_complete(self._post(body))
        took = (time.perf_counter() - start) * 1000
        if resp.status_code != 201:
            raise RuntimeError(f"the raw debit POST got {resp.status_code}, expected 201: {resp.text[:200]}")
        return took

    async def _post(self, body: Mapping[str, object]) -> httpx.Response:
        async with asyncio.timeout(RAW_POST_DEADLINE_S):  # httpx's timeout bounds each read, not the whole
            return await self._http.post(self.url, json=body)

    def close(self) -> None:
        self._loop.run_until_complete(self._http.aclose())
        self._loop.close()


def _bench_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def measure_tap_online(n: int = 200, warmup: int = 5) -> dict[str, dict[str, float]]:
    """``n`` approved taps interleaved with ``n`` raw debit POSTs; p50/p99 of each in ms."""
    workdir = _bench_dir("taptill-bench-tap-")
    try:
        with WalletEmulator("doc", wallets={CARD: BIG_BALANCE_CENTS}) as emulator:
            cfg = load_config(write_bench_config(workdir, emulator))
            with InProcessTerminal(cfg) as terminal:
                assert terminal.device is not None
                for _ in range(warmup):
                    terminal.tap(CARD)
                poster = RawPoster(emulator, terminal.device.client.trailing_slash)
                try:
                    for _ in range(warmup):
                        poster.post_ms()
                    taps: list[float] = []
                    posts: list[float] = []
                    for _ in range(n):
                        screen, ms = terminal.tap(CARD)
                        if not (isinstance(screen, ApprovedScreen) and screen.confirmed):
                            raise RuntimeError(f"a benchmark tap was not approved online: {screen!r}")
                        taps.append(ms)
                        posts.append(poster.post_ms())
                finally:
                    poster.close()
        return {"tap_online_ms": summary_ms(taps), "raw_post_ms": summary_ms(posts)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def measure_tap_offline(n: int = 100, tap_budget_ms: int = 800) -> dict[str, dict[str, float]]:
    """``n`` taps while the server accepts TCP but never answers; the first one waits the tap budget."""
    workdir = _bench_dir("taptill-bench-offline-")
    try:
        with WalletEmulator("doc", wallets={CARD: BIG_BALANCE_CENTS}) as emulator:
            cfg = load_config(write_bench_config(workdir, emulator, tap_budget_ms=tap_budget_ms))
            with InProcessTerminal(cfg) as terminal:
                terminal.tap(CARD)  # seen online once, so the offline policy knows its balance
                emulator.faults.inject(FaultKind.HANG, cap_s=120.0)
                taps: list[float] = []
                try:
                    for _ in range(n):
                        screen, ms = terminal.tap(CARD)
                        if not (isinstance(screen, ApprovedScreen) and not screen.confirmed):
                            raise RuntimeError(f"an offline benchmark tap was not accepted: {screen!r}")
                        taps.append(ms)
                finally:
                    emulator.faults.clear()  # release the hanging requests before shutting down
        return {"tap_offline_ms": summary_ms(taps, with_max=True)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
