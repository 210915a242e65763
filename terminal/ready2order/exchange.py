"""One call to the ready2order API under an overall deadline: the JSON of a 2xx, or the failure outcome.

Every call is over within ``timeout_s`` seconds (connect, send, headers, the whole body), whatever pace the
server sends at (``terminal.net.deadline``); the environment cannot add a proxy or a CA
(``terminal.net.transport``). A call carries one kind of bearer token (the developer token for the grant
flow, an account token for the account's data), so a 401/403 names the token that is wrong. It never
retries and never raises for the network.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Self
from urllib.parse import urlencode

import aiohttp

from terminal.model import printable
from terminal.net.deadline import Deadline, SendWatch
from terminal.net.transport import NOT_SENT, ServerLink, read_capped
from terminal.ready2order.outcomes import Failure, TokenKind, Unavailable
from terminal.ready2order.parse import MAX_BODY_BYTES, Body, interpret
from terminal.service.secret import Secret

CONNECT_TIMEOUT_S = 3.0
USER_AGENT = "taptill-ready2order/0.1"


class Ready2OrderHttp:
    """Calls under ``base_url`` (``https://api.ready2order.com/v1``) with one kind of bearer token, over one
    pooled keep-alive connection."""

    def __init__(
        self,
        base_url: str,
        token: Secret,
        kind: TokenKind,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.kind: TokenKind = kind
        self.timeout_s = timeout_s
        self._token = token
        self._server_date: tuple[float, float] | None = None  # (epoch the server said, monotonic then)
        self._http = ServerLink(
            max_connections=1,
            keepalive_s=30.0,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
        )

    def __repr__(self) -> str:
        return f"Ready2OrderHttp({self.base_url!r}, {self.kind} token)"

    async def aclose(self) -> None:
        await self._http.aclose()

    def use_token(self, token: Secret) -> bool:
        """Send ``token`` from now on; False if it is the same one."""
        if token == self._token:
            return False
        self._token = token
        return True

    def server_time(self) -> float | None:
        """The server's clock now (epoch seconds), from the Date header of its latest answer; None before
        the first. Whole seconds: good for a date window, not for ordering."""
        if self._server_date is None:
            return None
        said, at = self._server_date
        return said + (time.monotonic() - at)

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, object] | None = None,
        write: bool = False,
    ) -> Body | Failure:
        """``method`` ``base_url + path`` with ``body`` as JSON; ``write``: the request changes something
        (``terminal.ready2order.parse.interpret`` says when it may have been applied)."""
        headers = {"Authorization": f"Bearer {self._token.reveal()}"}
        content: bytes | None = None
        if body is not None:
            content = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        deadline = Deadline.after(self.timeout_s)
        watch = SendWatch()
        status: int | None = None
        content_type = ""
        retry_after: str | None = None
        data = b""
        problem: str | None = None
        try:
            async with deadline.scope():
                url = self.base_url + path
                if params:
                    url = f"{url}?{urlencode(params)}"  # base_url has no query of its own
                response = await self._http.send(
                    method,
                    url,
                    headers=headers,
                    content=content,
                    timeout=deadline.client_timeout(CONNECT_TIMEOUT_S),
                    watch=watch,
                )
                try:
                    status = response.status
                    content_type = response.headers.get("content-type", "")
                    retry_after = response.headers.get("retry-after")
                    self._note_date(response.headers.get("date"))
                    try:
                        raw = await read_capped(response, MAX_BODY_BYTES)
                        data, problem = raw.data, raw.problem
                    except aiohttp.ClientError as exc:
                        problem = f"the answer broke off ({_describe(exc)})"
                finally:
                    response.release()
        except NOT_SENT as exc:
            # The request never left this machine: nothing can have been created.
            return Unavailable(
                f"connection trouble: cannot connect to ready2order ({_describe(exc)})", maybe_applied=False
            )
        except TimeoutError:
            if status is None:
                return Unavailable(deadline.describe(), maybe_applied=write and watch.may_have_arrived)
            problem = f"body not complete within {self.timeout_s:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            if status is None:
                return Unavailable(
                    f"connection trouble: no answer from ready2order ({_describe(exc)})",
                    maybe_applied=write and watch.may_have_arrived,
                )
            problem = f"the answer broke off ({_describe(exc)})"
        assert status is not None
        return interpret(
            status,
            content_type,
            data,
            write=write,
            problem=problem,
            retry_after=retry_after,
            token=self.kind,
        )

    def _note_date(self, header: str | None) -> None:
        try:
            when = email.utils.parsedate_to_datetime(header) if header else None
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        if when is not None and when.tzinfo is not None:
            self._server_date = (when.timestamp(), time.monotonic())


class Ready2OrderSession:
    """What every ready2order client shares: its exchange (one kind of token), closed with the client
    (``async with``)."""

    def __init__(self, http: Ready2OrderHttp) -> None:
        self._http = http

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()


def _describe(exc: BaseException) -> str:
    # aiohttp's messages name the host, the URL and the OS error, never headers: no token in them.
    text = printable(str(exc), 200) if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
