"""Guards the terminal's inbound aiohttp servers (metrics endpoint, yourbarmate webhook) against clients
that hold connections open: a cap on connections at once, a deadline for the request head counted from
accept, one request per connection, and aiohttp's own log records stripped of the bytes a client sent.

Every connection costs the terminal a file descriptor, and the journal and the wallet client need
descriptors to sell. Without these limits a peer opening a thousand idle (or slowly dripping)
connections stopped taps. Beyond the cap a new connection is closed the moment it is accepted; a
connection that has not sent a whole request head ``head_deadline_s`` after it was accepted is cut,
however often it sends a byte (a deadline for the head, not a timeout per read).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import traceback
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger(__name__)

HEAD_DEADLINE_S = 5.0  # from accept to a whole request head; a scraper or webhook sends it at once
NOTE_EVERY_S = 60.0  # turned-away and cut-off connections are logged at most this often (a flood)
# aiohttp's loggers for the server side: their records may quote the raw bytes of a request (a header
# that is too long or malformed is quoted in the exception's message), so they are rewritten.
AIOHTTP_SERVER_LOGGERS = ("aiohttp.server", "aiohttp.access", "aiohttp.web", "aiohttp.internal")


class RequestBytesFilter(logging.Filter):
    """Rewrites aiohttp's records so that no byte a client sent reaches a log line: the message's own
    text stays, an argument stays only when it is a number or an IP address (the peer), and an exception
    is named by its type and where it was raised, never by its message (which quotes the request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        args = record.args if isinstance(record.args, tuple) else ()
        try:
            text = text % tuple(_safe_arg(a) for a in args) if args else text
        except (TypeError, ValueError):
            text = f"{text} (arguments withheld)"
        if record.exc_info and record.exc_info[1] is not None:
            text = f"{text}: {_exception_outline(record.exc_info[1])}"
        record.msg, record.args = text + " [request bytes not logged]", ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


_FILTER = RequestBytesFilter()


def install_log_filter() -> None:
    """Put the filter on aiohttp's server-side loggers (once; later calls change nothing)."""
    for name in AIOHTTP_SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def _safe_arg(value: object) -> object:
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return "<withheld>"
        return value
    return "<withheld>"


def _exception_outline(exc: BaseException) -> str:
    """``LineTooLong at aiohttp/_http_parser.pyx:925 cb_on_header_value``: a type and a place only."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    path = last.filename.replace("\\", "/")
    for marker in ("/site-packages/", "/terminal/", "/hw/"):
        at = path.rfind(marker)
        if at >= 0:
            path = path[at + len(marker) :] if marker == "/site-packages/" else path[at + 1 :]
            break
    return f"{type(exc).__name__} at {path}:{last.lineno} {last.name}"


class InboundGuard:
    """One inbound server's limits; ``await serve(app, host, port)`` starts it behind them."""

    def __init__(self, name: str, max_connections: int, head_deadline_s: float = HEAD_DEADLINE_S) -> None:
        """``name`` says which server in log lines ("metrics endpoint", "yourbarmate webhook")."""
        self.name = name
        self.max_connections = max_connections
        self.head_deadline_s = head_deadline_s
        self.open = 0  # connections held now
        self.turned_away = 0  # closed at accept: the cap was reached (since start)
        self.cut_off = 0  # closed for a request head not whole within the deadline (since start)
        self._by_handler: dict[RequestHandler, _GuardedConnection] = {}
        self._noted_at = {"turned_away": -NOTE_EVERY_S, "cut_off": -NOTE_EVERY_S}

    async def serve(self, app: web.Application, host: str, port: int) -> web.AppRunner:
        """Listen on host:port; the runner to ``cleanup()`` at stop. Raises OSError (cleaned up) if it
        cannot listen there."""
        install_log_filter()
        app.middlewares.append(_one_request_per_connection)
        app.on_response_prepare.append(_plain_server_header)
        # No access log (it prints client text). lingering_time=0: a body left unread closes the
        # connection instead of being read to its end. keepalive_timeout: aiohttp's own idle limit, the
        # same as the head deadline (a connection carries one request anyway).
        runner = web.AppRunner(app, access_log=None, lingering_time=0, keepalive_timeout=self.head_deadline_s)
        await runner.setup()
        server = runner.server
        assert server is not None
        make_request = server.request_factory

        def head_arrived(*args: Any, **kwargs: Any) -> BaseRequest:
            # aiohttp makes the request the moment the head is parsed, before any handler (an Expect
            # handler, a 404) and for a head it refuses: the head deadline is met.
            protocol = args[2] if len(args) > 2 else kwargs.get("protocol")
            guarded = self._by_handler.get(protocol) if isinstance(protocol, RequestHandler) else None
            if guarded is not None:
                guarded.head_arrived()
            return make_request(*args, **kwargs)

        server.request_factory = head_arrived
        site = _GuardedSite(runner, self, host, port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        return runner

    def _admit(self, guarded: _GuardedConnection) -> bool:
        if self.open >= self.max_connections:
            self.turned_away += 1
            self._note("turned_away", f"closed a new connection: {self.max_connections} are open already")
            return False
        self.open += 1
        self._by_handler[guarded.handler] = guarded
        return True

    def _closed(self, guarded: _GuardedConnection) -> None:
        self.open -= 1
        self._by_handler.pop(guarded.handler, None)

    def _overdue(self) -> None:
        self.cut_off += 1
        self._note(
            "cut_off", f"cut a connection that sent no whole request head within {self.head_deadline_s:g} s"
        )

    def _note(self, what: str, text: str) -> None:
        now = time.monotonic()
        if now - self._noted_at[what] >= NOTE_EVERY_S:
            self._noted_at[what] = now
            log.warning(
                "%s: %s (%d turned away, %d cut off since start)",
                self.name,
                text,
                self.turned_away,
                self.cut_off,
            )


SERVER_HEADER = "taptill"


async def _plain_server_header(_request: web.Request, answer: web.StreamResponse) -> None:
    """aiohttp names itself, its version and Python's in ``Server``: a scanner's map of which known
    holes to try. A name without versions says no more than the port does."""
    answer.headers["Server"] = SERVER_HEADER


@web.middleware
async def _one_request_per_connection(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every answer closes its connection: the head deadline then covers every request head (a kept-alive
    connection could drip its second head), and a scrape or a webhook call a minute costs nothing."""
    try:
        answer: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        exc.force_close()
        raise
    answer.force_close()
    return answer


class _GuardedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted against the cap and held to the head deadline."""

    def __init__(self, guard: InboundGuard, handler: RequestHandler) -> None:
        self.guard = guard
        self.handler = handler
        self._admitted = False
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport instances, only alike (the terminal runs uvloop)
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if not self.guard._admit(self):
            transport.abort()  # its descriptor is freed now; nothing it sent is read
            return
        self._admitted = True
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self.guard.head_deadline_s, self._head_overdue)
        self.handler.connection_made(transport)

    def head_arrived(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_overdue(self) -> None:
        self._deadline = None
        self.guard._overdue()
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            self.handler.data_received(data)

    def eof_received(self) -> None:
        if self._admitted:
            self.handler.eof_received()  # None: the transport closes itself once the answer is written

    def pause_writing(self) -> None:
        if self._admitted:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.head_arrived()  # nothing left to cut
        if not self._admitted:
            return
        self._admitted = False
        self.guard._closed(self)
        self.handler.connection_lost(exc)


class _GuardedSite(web.BaseSite):
    """A TCP site whose every connection goes through the guard."""

    def __init__(self, runner: web.AppRunner, guard: InboundGuard, host: str, port: int) -> None:
        super().__init__(runner)
        self._guard = guard
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None

        def connection() -> _GuardedConnection:
            return _GuardedConnection(self._guard, server())

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(connection, self._host, self._port, reuse_address=True)
