"""One overall deadline per network call (connect, send, headers, body), and whether its request left yet.

A read timeout bounds each read, not the exchange: a server or proxy that drips one byte at a time
keeps every read short and the request alive for ever. A ``Deadline`` is the whole call's budget; a
``SendWatch`` listens to aiohttp's tracing so a call stopped by its deadline (or a broken connection) can
tell "provably never sent" (still waiting for a connection) from "may have arrived".
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Deadline:
    """The moment a call must be over, on the event loop's monotonic clock (s); ``total_s`` is its budget."""

    at: float
    total_s: float

    @classmethod
    def after(cls, total_s: float) -> Deadline:
        """A deadline ``total_s`` seconds from now; needs a running event loop."""
        return cls(asyncio.get_running_loop().time() + total_s, total_s)

    def left_s(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - asyncio.get_running_loop().time())

    def scope(self) -> asyncio.Timeout:
        """``async with deadline.scope():`` raises TimeoutError in the block once the deadline passes."""
        return asyncio.timeout_at(self.at)

    def client_timeout(self, connect_s: float) -> aiohttp.ClientTimeout:
        """aiohttp's timeouts for one request: a TCP/TLS connect of at most ``connect_s`` (fails fast as
        never sent), a wait for a pooled connection of at most what is left. Reads need none: the
        deadline's scope ends the exchange."""
        left = self.left_s()
        return aiohttp.ClientTimeout(total=None, connect=left, sock_connect=min(left, connect_s))

    def describe(self) -> str:
        """Why a call ended, for outcomes and logs: "no complete answer within 1.5 s"."""
        return f"no complete answer within {self.total_s:g} s"


class SendWatch:
    """Whether a request may have reached the server, learnt from aiohttp's tracing (``SEND_TRACE``).

    Pass it as the request's ``trace_request_ctx`` (``ServerLink.send(watch=...)``). ``may_have_arrived``
    is False only when the trace shows the request started and never got a connection (waiting for a
    free one, DNS, TCP or TLS): nothing of it can have been written, so the server cannot have acted on
    it. Once a connection is in hand (new or kept alive) it is True, before the first byte is written:
    unknown is "may have arrived". Without any trace event (a request that never reached aiohttp's
    tracing) it answers True as well, the safe side.
    """

    __slots__ = ("_connected", "_traced")

    def __init__(self) -> None:
        self._traced = False
        self._connected = False

    @property
    def may_have_arrived(self) -> bool:
        return self._connected or not self._traced


async def _started(_session: Any, context: SimpleNamespace, _params: Any) -> None:
    watch = context.trace_request_ctx
    if isinstance(watch, SendWatch):
        watch._traced = True


async def _connected(_session: Any, context: SimpleNamespace, _params: Any) -> None:
    watch = context.trace_request_ctx
    if isinstance(watch, SendWatch):
        watch._connected = True


def send_trace() -> aiohttp.TraceConfig:
    """A TraceConfig that keeps a request's ``SendWatch`` (its ``trace_request_ctx``) up to date: a
    request started; it has a connection (a new one, or one kept alive), so its bytes may now leave."""
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_started)
    trace.on_connection_create_end.append(_connected)
    trace.on_connection_reuseconn.append(_connected)
    return trace
