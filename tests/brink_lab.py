"""Test rig for the PAR Brink client: loopback servers that answer fixed bytes (or hang, drip, flood), and
what the client sent them, parsed back."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
import xml.etree.ElementTree as ET

from terminal.brink.client import BrinkClient
from terminal.brink.parse import DEFAULT_MAX_ANSWER_BYTES
from terminal.service.secret import Secret
from tests.raw_http import RawHttpServer, _LoopbackServer, _read_request, _Server, http_response

ACCESS = "brink-access-token-7f3a"
LOCATION = "brink-location-token-91c2"
XML = "text/xml; charset=utf-8"


def soap(status: int, body: bytes) -> bytes:
    """A whole HTTP answer with a SOAP body."""
    return http_response(status, body, XML)


def client_for(
    server: _LoopbackServer, timeout_s: float = 2.0, max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
) -> BrinkClient:
    """A client of ``server`` as its Ordering.svc, with the lab's tokens."""
    url = server.base_url.replace("/wallet", "/Ordering.svc")
    return BrinkClient(url, Secret(ACCESS), Secret(LOCATION), timeout_s, max_answer_bytes=max_answer_bytes)


def split_request(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    """A received request as (request line, headers by lower-case name, body)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    line, *fields = head.decode("latin-1").split("\r\n")
    headers = {}
    for field in fields:
        name, _, value = field.partition(":")
        headers[name.strip().lower()] = value.strip()
    return line, headers, body


def structure(element: ET.Element) -> list[tuple[str, str]]:
    """Every element of a parsed body in document order as (namespaced tag, stripped text)."""
    return [(e.tag, (e.text or "").strip()) for e in element.iter()]


class HangingServer(_LoopbackServer):
    """Reads the request and never answers (until the client gives up); ``requests`` counts them."""

    def __init__(self) -> None:
        self.requests = 0
        self.stop = threading.Event()
        super().__init__(_HangHandler)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        super().__exit__(None, None, None)


class _HangHandler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        owner = self.server.owner
        assert isinstance(owner, HangingServer)
        sock: socket.socket = self.request
        sock.settimeout(10.0)
        try:
            if _read_request(sock):
                owner.requests += 1
            owner.stop.wait(10.0)
        except OSError:
            pass


class DrippingServer(_LoopbackServer):
    """Answers 200 with a Content-Length it never reaches, one byte every ``every_s``: every read is short,
    the answer never ends."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.every_s = every_s
        self.dripped = 0
        super().__init__(_DripHandler)


class _DripHandler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        owner = self.server.owner
        assert isinstance(owner, DrippingServer)
        sock: socket.socket = self.request
        sock.settimeout(10.0)
        try:
            _read_request(sock)
            sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {XML}\r\nContent-Length: 100000\r\n\r\n".encode())
            deadline = time.monotonic() + 20.0
            while time.monotonic() < deadline:
                sock.sendall(b" ")
                owner.dripped += 1
                time.sleep(owner.every_s)
        except OSError:
            pass


class FloodServer(_LoopbackServer):
    """Answers 200 with a ``size``-byte XML body, sent in 64 KiB pieces through a small send buffer;
    ``sent`` is how many body bytes the client took before it closed the connection."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0
        self.done = threading.Event()
        super().__init__(_FloodHandler)


class _FloodHandler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        owner = self.server.owner
        assert isinstance(owner, FloodServer)
        sock: socket.socket = self.request
        sock.settimeout(10.0)
        # A small send buffer: what the client has not read stays here, not in the kernel.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        piece = b"<x>" + b"a" * (64 * 1024 - 7) + b"</x>"
        try:
            _read_request(sock)
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {XML}\r\nContent-Length: {owner.size}\r\n\r\n"
            sock.sendall(head.encode())
            while owner.sent < owner.size:
                chunk = piece[: owner.size - owner.sent]
                sock.sendall(chunk)
                owner.sent += len(chunk)
        except OSError:
            pass
        finally:
            owner.done.set()


__all__ = ["RawHttpServer", "http_response"]
