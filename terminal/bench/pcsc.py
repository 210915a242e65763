"""Benchmarks the PC/SC reader through a private pcscd + vpcd: UID latency against pcscd's floor, idle CPU."""

from __future__ import annotations

import json
import queue
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from hw.readers.pcsc import PcscReader
from terminal.emulator.readers.pcsc_lab import PcscDaemon, VirtualCard

EVENT_TIMEOUT_S = 10.0
IDLE_SECONDS = 3.0


class _TimedListener:
    """Records when PcscReader delivers each event."""

    def __init__(self) -> None:
        self.presents: queue.Queue[tuple[str, float]] = queue.Queue()
        self.removals: queue.Queue[float] = queue.Queue()
        self.online = threading.Event()

    def card_present(self, uid: str, *, already_present: bool = False) -> None:
        self.presents.put((uid, time.perf_counter()))

    def card_removed(self) -> None:
        self.removals.put(time.perf_counter())

    def reader_status(self, online: bool, detail: str) -> None:
        if online:
            self.online.set()


class _RawInsertWatch:
    """A bare SCardGetStatusChange loop on one reader: when pcscd itself reports the card's arrival.

    It imports pyscard itself (function level) because it must not go through the adapter it measures.
    """

    def __init__(self, reader_name: str) -> None:
        self.reader_name = reader_name
        self.changes: queue.Queue[tuple[bool, float]] = queue.Queue()  # (present, when)
        self.ready = threading.Event()
        self._stopping = threading.Event()
        self._context: int | None = None
        self._thread = threading.Thread(target=self._run, name="pcsc-raw-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self.ready.wait(EVENT_TIMEOUT_S):
            raise RuntimeError(f"the raw PC/SC watch did not see reader {self.reader_name!r}")

    def stop(self) -> None:
        from smartcard import scard

        self._stopping.set()
        if self._context is not None:
            scard.SCardCancel(self._context)
        if self._thread.is_alive():
            self._thread.join(2.0)

    def _run(self) -> None:
        from smartcard import scard

        result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if result & 0xFFFFFFFF != scard.SCARD_S_SUCCESS:
            return
        self._context = context
        state = scard.SCARD_STATE_UNAWARE
        present: bool | None = None
        try:
            while not self._stopping.is_set():
                result, changes = scard.SCardGetStatusChange(context, 1000, [(self.reader_name, state)])
                seen = time.perf_counter()
                if result & 0xFFFFFFFF != scard.SCARD_S_SUCCESS:
                    continue
                event_state = changes[0][1]
                state = event_state & ~scard.SCARD_STATE_CHANGED
                now_present = bool(event_state & scard.SCARD_STATE_PRESENT)
                if present is None:
                    self.ready.set()
                elif now_present != present:
                    self.changes.put((now_present, seen))
                present = now_present
        finally:
            self._context = None
            scard.SCardReleaseContext(context)


def _wait_raw(watch: _RawInsertWatch, present: bool) -> float:
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while True:
        now_present, seen = watch.changes.get(timeout=max(0.0, deadline - time.monotonic()))
        if now_present == present:
            return seen


def _idle_cpu_pct(seconds: float) -> float:
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    return 100.0 * (time.process_time() - cpu_before) / (time.perf_counter() - wall_before)


def measure_pcsc(n: int = 20) -> dict[str, float]:
    """Insert ``n`` virtual cards; p50 of insert → UID at a PcscReader listener, and of insert → raw event.

    Also the process CPU percent while the PcscReader waits for a card (``IDLE_SECONDS``).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    workdir = Path(tempfile.mkdtemp(prefix="taptill-bench-pcsc-"))
    daemon = PcscDaemon(workdir)
    reader = PcscReader()
    listener = _TimedListener()
    watch = _RawInsertWatch(daemon.reader_names[0])
    card: VirtualCard | None = None
    try:
        daemon.start()
        reader.start(listener)
        if not listener.online.wait(EVENT_TIMEOUT_S):
            raise RuntimeError("PcscReader did not report the virtual reader online")
        idle_cpu_pct = _idle_cpu_pct(IDLE_SECONDS)
        watch.start()
        uid_ms: list[float] = []
        raw_ms: list[float] = []
        for index in range(n):
            uid = f"04{index:012X}"
            card = VirtualCard(uid)
            card.insert(daemon.slot_port(0))
            inserted_at = card.inserted_at
            assert inserted_at is not None
            got_uid, uid_at = listener.presents.get(timeout=EVENT_TIMEOUT_S)
            if got_uid != uid:
                raise RuntimeError(f"PcscReader reported {got_uid}, expected {uid}")
            raw_at = _wait_raw(watch, True)
            uid_ms.append((uid_at - inserted_at) * 1000)
            raw_ms.append((raw_at - inserted_at) * 1000)
            card.remove()
            card = None
            listener.removals.get(timeout=EVENT_TIMEOUT_S)
            _wait_raw(watch, False)
        return {
            "pcsc_uid_ms": round(statistics.median(uid_ms), 1),
            "pcsc_raw_event_ms": round(statistics.median(raw_ms), 1),
            "idle_cpu_pct": round(idle_cpu_pct, 2),
        }
    finally:
        if card is not None:
            card.remove()
        watch.stop()
        reader.stop()
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    print(json.dumps(measure_pcsc(), indent=2))


if __name__ == "__main__":
    main()
