"""One call to the ready2order API under an overall deadline: its status and JSON, or why there is none.

ready2order has two kinds of bearer token (seed 004): the developer token opens only the grant flow,
an account token only the account's data. Either one on the other's paths answers 403, a missing or
unknown one 401 (INTEGRATION-NOTES). A call says which kind it carries, so a refusal can name the token
that is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import httpx

from terminal.model import printable
from terminal.net.deadline import Deadline
from terminal.net.transport import new_client, read_capped
from terminal.service.secret import Secret

API_BASE_URL = "https://api.ready2order.com/v1"
# A page of 100 full product objects is about 150 KiB; anything far larger is not the API's answer.
MAX_BODY_BYTES = 4 * 1024 * 1024
CONNECT_TIMEOUT_S = 3.0
USER_AGENT = "taptill-ready2order"

TokenKind = Literal["developer", "account"]


@dataclass(frozen=True)
class Answer:
    """A 2xx answer whose body is JSON; numbers with a fraction are ``Decimal`` (euros never float)."""

    status: int
    data: object


@dataclass(frozen=True)
class WrongToken:
    """401 or 403: ready2order does not take the token this call carried (``which``: the kind it needs)."""

    which: TokenKind
    status: int
    reason: str

    def explain(self) -> str:
        """One line for the person who gave the token: which token is wrong, and what to give instead."""
        if self.which == "developer":
            if self.status == 403:
                return (
                    "ready2order refused the developer token (403): that is an account token (or another "
                    "kind), not the developer token; give the developer token ready2order emailed you"
                )
            return (
                f"ready2order does not know the developer token ({self.status}): it is missing, mistyped "
                "or revoked; give the developer token ready2order emailed you"
            )
        if self.status == 403:
            return (
                "ready2order refused the account token (403): that is a developer token (or another kind), "
                "not an account token; approve a new grant to get the account token"
            )
        return (
            f"ready2order does not accept the account token ({self.status}): it was revoked or is not a "
            "token; approve a new grant to get a new one"
        )


@dataclass(frozen=True)
class Refused:
    """Another 4xx (404, 429 included): the same call again will not help now; ``reason`` is one line."""

    status: int
    reason: str


@dataclass(frozen=True)
class Unreachable:
    """No usable answer: connection trouble, the deadline, a 5xx, or a body that is not the API's JSON."""

    reason: str


CallOutcome = Answer | WrongToken | Refused | Unreachable


class Ready2OrderHttp:
    """Calls under ``base_url`` (``https://api.ready2order.com/v1``) with one kind of bearer token.

    Every call is over within ``timeout_s`` seconds (connect, send, headers and the whole body), however
    slowly the server answers; the environment cannot add a proxy or a CA (terminal/net/transport.py).
    """

    def __init__(
        self,
        base_url: str,
        token: Secret,
        kind: TokenKind,
        *,
        timeout_s: float = 10.0,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.kind: TokenKind = kind
        self._token = token
        self._total_s = timeout_s
        self._connect_s = min(connect_timeout_s, timeout_s)
        self._http = new_client(
            timeout=httpx.Timeout(timeout_s, connect=self._connect_s),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=30.0),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"Ready2OrderHttp({self.base_url!r}, {self.kind} token)"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        payload: dict[str, object] | None = None,
    ) -> CallOutcome:
        """``method`` ``base_url + path``; a 2xx JSON answer, or why not (never raises for the network)."""
        headers = {"Authorization": f"Bearer {self._token.reveal()}"}
        content = None
        if payload is not None:
            content = json.dumps(payload, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        deadline = Deadline.after(self._total_s)
        try:
            async with (
                deadline.scope(),
                self._http.stream(
                    method,
                    self.base_url + path,
                    params=params,
                    headers=headers,
                    content=content,
                    timeout=deadline.httpx_timeout(self._connect_s),
                ) as response,
            ):
                raw = await read_capped(response, MAX_BODY_BYTES)
                status = response.status_code
                content_type = response.headers.get("content-type", "")
        except TimeoutError:
            return Unreachable(deadline.describe())
        except httpx.TimeoutException:  # a read that used up what was left of the deadline
            return Unreachable(deadline.describe())
        except (httpx.HTTPError, OSError) as exc:
            # httpx's messages name the host and the OS error, never the headers (the token)
            return Unreachable(f"connection trouble ({type(exc).__name__}: {printable(str(exc), 120)})")
        if raw.problem is not None:
            return Unreachable(f"HTTP {status} with {raw.problem}")
        data, problem = _json(raw.data, content_type)
        if status in (401, 403):
            return WrongToken(self.kind, status, _reason(status, data))
        if 400 <= status < 500:
            return Refused(status, _reason(status, data))
        if status >= 500 or not 200 <= status < 300:
            return Unreachable(_reason(status, data))
        if problem is not None:
            return Unreachable(f"HTTP {status} but {problem}: not the ready2order API")
        return Answer(status, data)


def _json(body: bytes, content_type: str) -> tuple[object, str | None]:
    """The body as JSON with exact decimals, or why it is not JSON."""
    kind = content_type.split(";")[0].strip().lower()
    if kind and kind != "application/json" and not kind.endswith("+json"):
        return None, f"a {printable(kind, 60)} body"

    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=refuse), None
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, "a body that is not valid JSON"


def _reason(status: int, data: object) -> str:
    """``HTTP 404 Not Found: <the server's message>``, one printable line."""
    text = f"HTTP {status} {httpx.codes.get_reason_phrase(status)}".rstrip()
    if isinstance(data, dict):
        for key in ("msg", "message", "error_description", "error"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return f"{text}: {printable(value, 200)}"
    return text
