"""Serving an emulator on loopback in a thread, its port option, and running until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
import socketserver
import threading
from types import FrameType, TracebackType
from typing import Self

from terminal.emulator.faults import FaultableHTTPServer, FaultInjector


def stop_signal() -> threading.Event:
    """An event SIGTERM/SIGINT set from now on: installed before an emulator says it listens, so a
    signal right after that line stops it cleanly."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def wait_for_stop_signal(stop: threading.Event | None = None) -> None:
    """Block the main thread until SIGTERM/SIGINT (``stop``, from ``stop_signal``, when installed
    earlier); the servers run in their own threads meanwhile."""
    stop = stop or stop_signal()
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


class ServingThread:
    """Runs ``server`` (bound already, e.g. to 127.0.0.1:0) in a daemon thread until ``stop``.

    ``stop`` also closes pooled keep-alive connections when the server tracks them
    (``close_all_connections``), so a client's next request fails like one to a stopped server would.
    """

    def __init__(self, server: socketserver.TCPServer, name: str) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=name, daemon=True)

    def start(self) -> ServingThread:
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        close_all = getattr(self.server, "close_all_connections", None)
        if close_all is not None:
            close_all()
        self.server.server_close()
        self._thread.join(timeout=5)


class LoopbackEmulator:
    """The life of an emulator served on 127.0.0.1 in a thread: ``start``, ``stop``, ``with``, its port.

    A subclass binds its server (``_bind``) and names itself (``kind``); ``stop`` first releases requests
    its fault injection holds, so none outlives the server.
    """

    kind = "emulator"
    faults: FaultInjector
    _server: FaultableHTTPServer | None = None
    _serving: ServingThread | None = None

    def _bind(self) -> FaultableHTTPServer:
        raise NotImplementedError

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"this {self.kind} emulator is already running; create a new one to restart")
        self._server = self._bind()
        self._serving = ServingThread(self._server, f"{self.kind}-emulator").start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.faults.clear()  # releases hanging requests
        if self._serving is not None:
            self._serving.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"the {self.kind} emulator is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far (a keep-alive client needs one)."""
        return self._server.connections_accepted if self._server is not None else 0
