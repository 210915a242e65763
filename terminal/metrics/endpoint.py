"""The metrics endpoint, served by aiohttp inside the terminal's event loop: ``GET /metrics`` only, a
bearer token checked in constant time when one is configured, and no request body taken at all.

Every other path is 404 and every other method 405 (aiohttp's router). The token never reaches a log
line: refusals are logged without any header, and at most once a minute (a scanner must not fill the
journal of the system log); aiohttp's own records are stripped of request bytes (terminal.net.inbound).
At most ``MAX_CONNECTIONS`` connections are served at once, each with a deadline for its request head.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from terminal.net.inbound import InboundGuard
from terminal.service.secret import Secret

log = logging.getLogger(__name__)

PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus's text exposition format
REALM = 'Bearer realm="taptill metrics"'
MAX_CONNECTIONS = 16  # a Prometheus or two scrape once in a while; more at once is a flood
REFUSAL_LOG_EVERY_S = 60.0

Render = Callable[[], Awaitable[bytes]]


class EndpointError(Exception):
    """The endpoint cannot start (address in use, no such address); one line saying what to fix."""


class MetricsEndpoint:
    """``await start()`` and ``await stop()`` in the loop that runs the terminal."""

    def __init__(self, host: str, port: int, render: Render, token: Secret | None) -> None:
        """``render`` gives the exposition text of one scrape; ``token`` None: no Authorization asked."""
        self.host = host
        self.port = port  # the bound port once started (a configured 0 picks a free one)
        self._render = render
        # Kept as a SHA-256 digest: compare_digest takes the same time only for inputs of one length.
        self._token = _digest(token.reveal().encode()) if token is not None else None
        self._runner: web.AppRunner | None = None
        self.guard = InboundGuard("metrics endpoint", MAX_CONNECTIONS)
        self._refused_logged_at = -REFUSAL_LOG_EVERY_S
        self.refused = 0  # requests refused for their credentials or their body, since start

    async def start(self) -> None:
        """Listen on host:port; EndpointError if it cannot."""
        app = web.Application(client_max_size=1024)
        app.router.add_get(PATH, self._handle)
        try:
            self._runner = await self.guard.serve(app, self.host, self.port)
        except OSError as exc:
            raise EndpointError(
                f"[metrics] listen {self.host}:{self.port}: cannot listen there ({exc.strerror}); "
                "pick a free address and port"
            ) from None
        if self._runner.addresses:
            self.port = int(self._runner.addresses[0][1])
        log.info(
            "metrics at http://%s:%d%s (%s)",
            self.host,
            self.port,
            PATH,
            "bearer token required" if self._token is not None else "no token: loopback only",
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request.headers.get(hdrs.AUTHORIZATION, "")):
            self._note_refusal("wrong or no bearer token")
            return web.Response(
                status=401, text="bearer token required\n", headers={"WWW-Authenticate": REALM}
            )
        if request.body_exists:  # a Content-Length over 0 or a chunked body
            self._note_refusal("a request with a body")
            answer = web.Response(status=413, text="a scrape has no body\n")
            answer.force_close()
            return answer
        body = await self._render()
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: CONTENT_TYPE})

    def _authorized(self, header: str) -> bool:
        if self._token is None:
            return True
        scheme, _, given = header.partition(" ")
        ok = hmac.compare_digest(_digest(given.strip().encode()), self._token)
        return scheme.lower() == "bearer" and ok

    def _note_refusal(self, what: str) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._refused_logged_at >= REFUSAL_LOG_EVERY_S:
            self._refused_logged_at = now
            log.warning("metrics endpoint refused %s (%d refused since start)", what, self.refused)


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()
