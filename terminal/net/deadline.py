"""One overall deadline per network call (connect, send, headers, body), and whether its request left yet.

httpx's timeouts bound each read, not the exchange: a server or proxy that drips one byte at a time
keeps every read short and the request alive for ever. A ``Deadline`` is the whole call's budget; a
``SendWatch`` listens to httpcore's trace hook so a call stopped by its deadline can tell "provably
never sent" (still connecting) from "may have arrived".
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx


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

    def httpx_timeout(self, connect_s: float) -> httpx.Timeout:
        """httpx's per-phase timeouts, none longer than what is left (connect also at most ``connect_s``)."""
        left = self.left_s()
        return httpx.Timeout(left, connect=min(left, connect_s))

    def describe(self) -> str:
        """Why a call ended, for outcomes and logs: "no complete answer within 1.5 s"."""
        return f"no complete answer within {self.total_s:g} s"


class SendWatch:
    """Whether a request began to leave this machine, learnt from httpcore's ``trace`` extension.

    Pass ``extensions`` with the request. ``may_have_arrived`` is False only when the trace shows the
    request's headers were never started (still waiting on DNS, TCP or TLS): then the server cannot
    have acted on it. Without any trace event (another transport) it answers True, the safe side.
    """

    def __init__(self) -> None:
        self._traced = False
        self._sending = False

    @property
    def extensions(self) -> dict[str, Any]:
        return {"trace": self._trace}

    async def _trace(self, event: str, info: Mapping[str, Any]) -> None:
        self._traced = True
        if event.endswith(".send_request_headers.started"):
            request = info.get("request")
            # A proxy's CONNECT shares our extensions but carries nothing of our request.
            if getattr(request, "method", b"") != b"CONNECT":
                self._sending = True

    @property
    def may_have_arrived(self) -> bool:
        return self._sending or not self._traced
