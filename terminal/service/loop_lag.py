"""The event-loop lag monitor: how late the device loop runs, and what held it when it ran late.

Everything a guest sees (the decision screen, the relay, the next tap, SIGTERM) waits for the one asyncio
loop. A callback that blocks it or a task that goes round without awaiting freezes the terminal while the
watchdog pings may still come from elsewhere, so the loop measures itself: a ticker task sleeps
``tick_s`` and records how much later than that it woke (the lag, in ms). A watcher thread looks at the
ticker's heartbeat; when the loop has not ticked for ``warn_ms`` it captures the loop thread's stack, so
the warning names the code that held the loop, even when the loop never comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

WARN_MS = 250.0  # lag worth a warning: a tap should answer in well under a second
TICK_S = 0.1
STILL_BLOCKED_S = 2.0  # the watcher itself warns when the loop stays blocked this long (it may never return)
SAMPLES = 6000  # ten minutes of ticks for the percentiles
CACHE_KEY = "loop_lag"
_OUR_CODE = ("/terminal/", "/hw/")


@dataclass(frozen=True)
class LagStats:
    """What ``taptill status`` shows: stalls over the warning threshold since the terminal started."""

    stalls: int
    max_ms: float
    last_stall_ms: float | None
    last_stall_at: float | None  # wall clock (for a person), seconds since the epoch
    last_culprit: str | None
    started_at: float


def culprit(frame: FrameType) -> str:
    """Where a stack stands, innermost first: the innermost frame (or the callback the loop is running,
    when that is not Python code, like ``time.sleep``) and up to three frames of our own (terminal/, hw/)."""
    parts: list[str] = []
    ours = 0
    innermost = True
    f: FrameType | None = frame
    while f is not None and ours < 3:
        filename = f.f_code.co_filename
        mine = any(part in filename for part in _OUR_CODE)
        if innermost and not mine:
            parts.append(_describe_foreign(f))
        if mine:
            parts.append(f"{_short(filename)}:{f.f_lineno} {f.f_code.co_name}")
            ours += 1
        innermost = False
        f = f.f_back
    return " < ".join(parts) or "unknown"


def _describe_foreign(f: FrameType) -> str:
    handle = f.f_locals.get("self")
    if isinstance(handle, asyncio.Handle):
        callback = getattr(handle, "_callback", None)
        name = getattr(callback, "__qualname__", None) or repr(callback)
        module = getattr(callback, "__module__", None)
        return f"callback {module + '.' if module else ''}{name}"
    if isinstance(handle, asyncio.Runner):
        # uvloop's loop is C code: a callback that is not Python code leaves no frame to name.
        return "a callback with no Python frame (the event loop's C code runs it)"
    return f"{_short(f.f_code.co_filename)}:{f.f_lineno} {f.f_code.co_name}"


def _short(filename: str) -> str:
    for part in _OUR_CODE:
        at = filename.rfind(part)
        if at >= 0:
            return filename[at + 1 :]
    return Path(filename).name


class LoopLagMonitor:
    """Measures the lag of the running asyncio loop; ``run`` is a task of that loop."""

    def __init__(
        self,
        *,
        warn_ms: float = WARN_MS,
        tick_s: float = TICK_S,
        on_stall: Callable[[LagStats], None] | None = None,
    ) -> None:
        self.warn_ms = warn_ms
        self.tick_s = tick_s
        self.on_stall = on_stall  # e.g. store the counts for `taptill status`
        self._samples: deque[float] = deque(maxlen=SAMPLES)
        self._lock = threading.Lock()
        self._beat = time.monotonic()
        self._loop_thread: int | None = None
        self._captured: str | None = None  # what the watcher saw the loop doing during the current stall
        self._stopping = threading.Event()
        self._stats = LagStats(0, 0.0, None, None, None, time.time())

    @property
    def stats(self) -> LagStats:
        with self._lock:
            return self._stats

    def summary_ms(self) -> dict[str, float]:
        """p50, p99 and max of the lag samples so far, in ms (zeros before the first sample)."""
        with self._lock:
            values = sorted(self._samples)
        if not values:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}

        def pick(q: float) -> float:
            return round(values[min(len(values) - 1, int(q * len(values)))], 2)

        return {"p50": pick(0.5), "p99": pick(0.99), "max": round(values[-1], 2)}

    def sample_count(self) -> int:
        """How many ticks ``summary_ms`` is drawn from (one per ``tick_s`` the loop ran)."""
        with self._lock:
            return len(self._samples)

    def reset(self) -> None:
        """Forget the samples (the bench measures one phase at a time); the stall counts stay."""
        with self._lock:
            self._samples.clear()

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop``; the watcher thread lives as long as this task."""
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._stopping.clear()
        watcher = threading.Thread(target=self._watch, name="loop-lag-watcher", daemon=True)
        watcher.start()
        try:
            while not stop.is_set():
                before = time.monotonic()
                self._beat = before
                await asyncio.sleep(self.tick_s)
                self._record((time.monotonic() - before - self.tick_s) * 1000)
        finally:
            self._stopping.set()
            watcher.join(timeout=1.0)

    def _record(self, lag_ms: float) -> None:
        lag_ms = max(0.0, lag_ms)
        with self._lock:
            self._samples.append(lag_ms)
            if lag_ms <= self.warn_ms:
                self._captured = None
                return
            what = self._captured or "unknown (the stall ended before the watcher looked)"
            self._captured = None
            s = self._stats
            self._stats = LagStats(
                stalls=s.stalls + 1,
                max_ms=max(s.max_ms, lag_ms),
                last_stall_ms=round(lag_ms, 1),
                last_stall_at=time.time(),
                last_culprit=what,
                started_at=s.started_at,
            )
            stats = self._stats
        log.warning("event loop blocked for %.0f ms (over %.0f ms) in %s", lag_ms, self.warn_ms, what)
        if self.on_stall is not None:
            try:
                self.on_stall(stats)
            except Exception:  # counting a stall must never become one
                log.exception("cannot store the loop lag counts")

    def _watch(self) -> None:
        seen_beat = 0.0
        warned_long = 0.0
        while not self._stopping.wait(self.tick_s / 2):
            beat = self._beat
            blocked = time.monotonic() - beat - self.tick_s
            if blocked * 1000 <= self.warn_ms:
                continue
            if beat != seen_beat:  # a new stall: see what the loop thread is doing now
                seen_beat, warned_long = beat, 0.0
                where = self._where()
                with self._lock:
                    self._captured = where
            if blocked >= STILL_BLOCKED_S and blocked - warned_long >= STILL_BLOCKED_S:
                warned_long = blocked
                log.warning("event loop still blocked after %.1f s in %s", blocked, self._where())

    def _where(self) -> str:
        frame = sys._current_frames().get(self._loop_thread or -1)
        if frame is None:
            return "unknown"
        with contextlib.suppress(Exception):
            return culprit(frame)
        return "unknown"


def stats_json(stats: LagStats) -> dict[str, object]:
    """The stats as stored in the journal's cache for `taptill status`."""
    return asdict(stats)
