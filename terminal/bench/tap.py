"""Tap latency through the real stack: a reader thread's UID → DeviceLoop → WalletClient → wallet emulator.

Online taps are interleaved with the tap's two requests (the balance GET and the debit POST) made alone
with httpx (the floor), so a busy machine slows both alike; offline taps run against an emulator that
accepts TCP but never answers. Every wait has a deadline and ends in an error that names what was awaited.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import quote

import httpx

from terminal.bench.config import BIG_BALANCE_CENTS, bench_dir, espresso_id, write_bench_config
from terminal.bench.stats import summary_ms
from terminal.config import Config, load_config
from terminal.device_loop import DeviceLoop
from terminal.emulator.faults import FaultKind
from terminal.emulator.wallet import WalletEmulator
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
from terminal.service.run import RunOptions, run_terminal

CARD = "04B0B0B0B0B0B0"
STEP_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 20.0  # start-up: journal, catalog (its own 2 s deadline), reader, first screen
STOP_TIMEOUT_S = 15.0  # a stop finishes the sale under way (at most 10 s) and closes the journal
RAW_DEADLINE_S = 5.0  # the floor's two requests, connect to last body byte, like every request of ours
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

    def wait_for(
        self, start: int, accept: Callable[[Screen], bool], timeout: float, what: str = "matching screen"
    ) -> tuple[Screen, float]:
        """The first screen from index ``start`` on that ``accept`` takes, with when it was shown.

        Raises TimeoutError naming ``what`` and the last screens shown when none comes within ``timeout`` s.
        """
        with self._cond:
            found: list[tuple[Screen, float]] = []

            def seen() -> bool:
                found[:] = [(s, t) for s, t in self.shown[start:] if accept(s)][:1]
                return bool(found)

            if not self._cond.wait_for(seen, timeout=timeout):
                last = ", ".join(type(s).__name__ for s, _ in self.shown[-3:]) or "none"
                raise TimeoutError(
                    f"the terminal showed no {what} within {timeout:g} s (last screens: {last})"
                )
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
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._ready.wait(0.05):
            if not self._thread.is_alive():
                raise RuntimeError(f"the terminal did not start: {self._error!r}")
            if time.monotonic() > deadline:
                self._request_stop()
                raise RuntimeError(f"the in-process terminal was not ready within {READY_TIMEOUT_S:g} s")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._request_stop()
        gc.unfreeze()  # what its start froze goes back to the collector: the process goes on without it
        self._thread.join(timeout=STOP_TIMEOUT_S)
        if self._thread.is_alive() and exc_type is None:
            raise RuntimeError(f"the in-process terminal did not stop within {STOP_TIMEOUT_S:g} s")

    def _request_stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)

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

        # freeze_start_up as `taptill run` does (undone in __exit__).
        opts = RunOptions(
            display=self.display, on_ready=ready, install_signal_handlers=False, freeze_start_up=True
        )
        await run_terminal(self.cfg, self._stop, opts)

    def tap(self, uid: str) -> tuple[Screen, float]:
        """Tap ``uid``; its outcome screen and the ms from the UID reaching the terminal to that screen.

        The UID is handed over the way a hardware reader's thread does it (``card_present`` and
        ``card_removed`` on the device loop, from this thread); the sim reader's Unix socket and its
        accept thread are a test twin with no part in a real tap. Waits for the idle screen afterwards,
        so every tap starts from a resting terminal.
        """
        device = self.device
        if device is None:
            raise RuntimeError("the in-process terminal is not running; use it as a context manager")
        start = self.display.mark()
        sent = time.perf_counter()
        device.card_present(uid)
        device.card_removed()
        screen, shown = self.display.wait_for(
            start, lambda s: isinstance(s, OUTCOMES), STEP_TIMEOUT_S, "outcome screen for the tap"
        )
        after = self.display.mark()
        self.display.wait_for(
            after - 1,
            lambda s: isinstance(s, IdleScreen | OfflineScreen),
            STEP_TIMEOUT_S,
            "idle screen after the tap",
        )
        return screen, (shown - sent) * 1000


class RawLookupPost:
    """The floor of an online tap: its balance GET and debit POST, made alone with httpx's AsyncClient on
    one kept-alive connection (no journal, no decision, no screen), each pair within RAW_DEADLINE_S."""

    def __init__(self, emulator: WalletEmulator, trailing_slash: bool) -> None:
        slash = "/" if trailing_slash else ""
        wallet = f"{emulator.base_url}/pos/wallets/token/{quote(CARD, safe='')}"
        self.lookup_url = f"{wallet}{slash}"
        self.debit_url = f"{wallet}/transactions{slash}"
        self.product = espresso_id(emulator)
        self._loop = asyncio.new_event_loop()
        self._http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {emulator.api_token}", "Accept": "application/json"},
            timeout=RAW_DEADLINE_S,
            trust_env=False,  # like the terminal's clients: a proxy variable must not skew the floor
        )

    def lookup_post_ms(self) -> float:
        """ms from the GET's start to the POST's last byte; raises RuntimeError unless 200 then 201."""
        body = {"products": [self.product], "description": "Kaffee (bench)", "tag": "coffee"}
        body["idempotency_key"] = new_idempotency_key()
        start = time.perf_counter()
        lookup, debit = self._loop.run_until_complete(self._both(body))
        took = (time.perf_counter() - start) * 1000
        for what, resp, expected in (("balance GET", lookup, 200), ("debit POST", debit, 201)):
            if resp.status_code != expected:
                raise RuntimeError(
                    f"the raw {what} got {resp.status_code}, expected {expected}: {resp.text[:200]}"
                )
        return took

    async def _both(self, body: Mapping[str, object]) -> tuple[httpx.Response, httpx.Response]:
        async with asyncio.timeout(RAW_DEADLINE_S):  # httpx's timeout bounds each read, not the whole
            lookup = await self._http.get(self.lookup_url)
            debit = await self._http.post(self.debit_url, json=body)
        return lookup, debit

    def close(self) -> None:
        self._loop.run_until_complete(asyncio.wait_for(self._http.aclose(), RAW_DEADLINE_S))
        self._loop.close()


def measure_tap_online(n: int = 1000, warmup: int = 5) -> dict[str, dict[str, float]]:
    """``n`` approved online taps, each followed by the same two requests made alone (the floor).

    Returns ``tap_online_ms`` and ``raw_lookup_post_ms`` (p50/p99, ms) and ``loop_lag_ms`` (p99/max,
    ms): how late the device loop ran while tapping, its monitor's samples cleared when tapping starts.
    ``n`` is large because a p99 of a few hundred samples on a loaded machine is one or two stray
    scheduler delays, several ms either way, more than the 2 ms the target allows. The journal lives
    in memory (``bench_dir``): the floor has no disk in it, and a shared disk's fsync would swamp the
    comparison; what a durable commit costs is ``enqueue_per_s``'s business.
    """
    workdir = bench_dir("taptill-bench-tap-", memory=True)
    try:
        with WalletEmulator("doc", wallets={CARD: BIG_BALANCE_CENTS}) as emulator:
            cfg = load_config(write_bench_config(workdir, emulator))
            with InProcessTerminal(cfg) as terminal:
                device = terminal.device
                assert device is not None
                for _ in range(warmup):
                    terminal.tap(CARD)
                floor = RawLookupPost(emulator, device.client.trailing_slash)
                try:
                    for _ in range(warmup):
                        floor.lookup_post_ms()
                    taps: list[float] = []
                    floors: list[float] = []
                    device.lag.reset()
                    for i in range(n):
                        screen, ms = terminal.tap(CARD)
                        if not (isinstance(screen, ApprovedScreen) and screen.confirmed):
                            raise RuntimeError(
                                f"benchmark tap {i + 1} of {n} was not approved online ({ms:.0f} ms): "
                                f"{screen!r}; {_last_sale(device)}"
                            )
                        taps.append(ms)
                        floors.append(floor.lookup_post_ms())
                    if device.lag.sample_count() == 0:
                        raise RuntimeError("the loop lag monitor took no sample while tapping")
                    lag = device.lag.summary_ms()
                finally:
                    floor.close()
        return {
            "tap_online_ms": summary_ms(taps),
            "raw_lookup_post_ms": summary_ms(floors),
            "loop_lag_ms": {"p99": lag["p99"], "max": lag["max"]},
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _last_sale(device: DeviceLoop) -> str:
    """The newest journal row, for an error that must say why a tap went the way it did."""
    rows = device.journal.query(
        "SELECT id, state, reason, attempts, maybe_sent, offline FROM sales ORDER BY id DESC LIMIT 1"
    )
    if not rows:
        return "no sale in the journal"
    sale_id, state, reason, attempts, maybe_sent, offline = rows[0]
    return (
        f"sale {sale_id}: {state}, reason {reason!r}, attempts {attempts}, "
        f"maybe sent {bool(maybe_sent)}, offline {bool(offline)}"
    )


def measure_tap_offline(n: int = 100, tap_budget_ms: int = 800) -> dict[str, dict[str, float]]:
    """``n`` taps while the server accepts TCP but never answers; the first one waits the tap budget."""
    workdir = bench_dir("taptill-bench-offline-")
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
