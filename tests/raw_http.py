"""Odd servers on 127.0.0.1: canned raw answers, and a port whose connects never complete."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import types
from collections.abc import Iterator, Sequence
from typing import Self

from terminal.emulator.serving import ServingThread


def http_response(status: int, body: bytes, content_type: str = "application/json", **headers: str) -> bytes:
    """A complete HTTP/1.1 response with Content-Length (``headers`` names use _ for -)."""
    lines = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(5.0)
        owner = self.server.owner
        assert isinstance(owner, RawHttpServer)
        try:
            sock.sendall(owner.next_answer(_read_request(sock)))
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1)  # wait for the client to close, so nothing is reset under its feet
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: _LoopbackServer


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body  # the whole request: a body may come after the head's packet


class _LoopbackServer:
    """A threaded TCP server on 127.0.0.1 serving ``handler``; a context manager that starts and stops it."""

    def __init__(self, handler: type[socketserver.BaseRequestHandler]) -> None:
        server = _Server(("127.0.0.1", 0), handler)
        server.owner = self
        self._serving = ServingThread(server, "raw-http")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._serving.port}/wallet"

    def __enter__(self) -> Self:
        self._serving.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        self._serving.stop()


class RawHttpServer(_LoopbackServer):
    """Answers the n-th connection with ``answers[n]`` (the last one repeats), then closes it."""

    def __init__(self, answers: Sequence[bytes]) -> None:
        self.answers = list(answers)
        self.served = 0
        self.requests: list[bytes] = []  # each request as received (head and body), in order
        self._lock = threading.Lock()
        super().__init__(_Handler)

    def next_answer(self, request: bytes) -> bytes:
        with self._lock:
            self.requests.append(request)
            answer = self.answers[min(self.served, len(self.answers) - 1)]
            self.served += 1
        return answer


@contextlib.contextmanager
def connect_never_completes() -> Iterator[int]:
    """A loopback port whose listener never accepts and whose queue is full: Linux drops further SYNs,
    so a connect there hangs until the client gives up, and no byte of a request can leave."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port)):  # fills the queue
            yield port


class StaleKeepAliveServer(_LoopbackServer):
    """Answers the first request on each connection (keeping it open, as keep-alive servers do), then
    closes the connection under the next request with no answer: an idle connection the server dropped
    just as the client reused it. ``requests`` lists the request lines received, answered or not."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests: list[str] = []
        self._lock = threading.Lock()
        super().__init__(_StaleHandler)

    def note(self, request: bytes) -> None:
        with self._lock:
            self.requests.append(request.split(b"\r\n", 1)[0].decode("latin-1"))


class _StaleHandler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(5.0)
        owner = self.server.owner
        assert isinstance(owner, StaleKeepAliveServer)
        try:
            owner.note(_read_request(sock))
            sock.sendall(owner.answer)
            second = _read_request(sock)
            if second:
                owner.note(second)
        except OSError:
            pass
