"""An emulator's command line: its port option, and staying in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
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


def tcp_port(text: str) -> int:
    """``--port``: 0 (a free port) up to 65535; anything else is a one-line usage error."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number; use 0..65535") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number; use 0..65535 (0 picks a free one)")
    return port
