"""Clients that try to hold an inbound server (metrics endpoint, yourbarmate webhook) open over real TCP
sockets on 127.0.0.1: idle connections up to and beyond the cap, and a request head dripped a byte at a time
(terminal.net.inbound)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

HANG_S = 30.0  # a bound for a read that should end at once, so a broken server fails the test, never hangs


def idle_connections(port: int, count: int) -> list[socket.socket]:
    """``count`` connections opened one after another, each sending nothing."""
    opened = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=HANG_S)
        opened.append(sock)
    return opened


def closed_by_server(sock: socket.socket, timeout_s: float = HANG_S) -> bool:
    """True once the server closed ``sock`` (end of stream or reset) within ``timeout_s``; False if it
    was still open then."""
    sock.settimeout(timeout_s)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def still_open(sock: socket.socket) -> bool:
    """True while the server has neither closed ``sock`` nor sent anything on it (looked at, not waited)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(HANG_S)
    return False


def drip_until_cut(port: int, head: bytes, every_s: float = 0.5, give_up_s: float = 120.0) -> float:
    """Send ``head`` a byte every ``every_s`` seconds; seconds from connect until the server hung up.

    The head must take longer than ``give_up_s`` at that pace; AssertionError if it was sent whole (or
    ``give_up_s`` passed) without the server hanging up."""
    assert len(head) * every_s > give_up_s, "the head would be sent whole before the test gives up"
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_S) as sock:
        start = time.monotonic()
        sock.settimeout(every_s)
        for byte in head:
            if time.monotonic() - start > give_up_s:
                break
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(100) == b"":
                    return time.monotonic() - start
                raise AssertionError("the server answered a head that was not whole")
            except TimeoutError:
                continue  # nothing from the server yet: the next byte
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - start
    raise AssertionError(f"the server kept a dripping head open for {give_up_s:g} s")


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = HANG_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
