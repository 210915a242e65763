"""Keeps an emulator's command line in the foreground until SIGTERM or SIGINT (clean exit 0)."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def wait_for_stop_signal() -> None:
    """Block the main thread until SIGTERM/SIGINT; the servers run in their own threads meanwhile."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    while not stop.wait(0.5):
        pass
