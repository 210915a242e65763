"""Partybroker API client: list drinks and report sales, answering with typed outcomes, never raising."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from types import TracebackType
from urllib.parse import quote

import aiohttp

from terminal.model import printable
from terminal.net.deadline import Deadline, SendWatch
from terminal.net.transport import NOT_SENT, ServerLink, read_capped
from terminal.partybroker.outcomes import (
    Ambiguous,
    BuyOutcome,
    DrinksOutcome,
    Method,
    Recorded,
    Sale,
)
from terminal.partybroker.parse import MAX_BODY_BYTES, interpret
from terminal.service.secret import Secret

# --- the client -----------------------------------------------------------------------------------------


class PartybrokerClient:
    """One party's drinks endpoint over one pooled keep-alive connection.

    Every call is over within ``timeout_s`` seconds (connect, send, headers and the whole body
    together; a connect alone gives up after ``connect_timeout_s``), whatever pace the server sends at.
    """

    def __init__(
        self,
        base_url: str,
        party_id: str,
        username: str,
        password: Secret,
        *,
        timeout_s: float = 5.0,
        connect_timeout_s: float = 3.0,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/{quote(party_id, safe='')}/drinks"
        self._auth = Secret(
            "Basic " + base64.b64encode(f"{username}:{password.reveal()}".encode()).decode("ascii")
        )
        self._total_s = timeout_s
        self._connect_s = connect_timeout_s
        self._max_body = max_body_bytes
        self._http = ServerLink(
            max_connections=1,
            keepalive_s=30.0,
            headers={"Accept": "application/json", "User-Agent": "taptill-partybroker"},
        )

    def __repr__(self) -> str:
        return f"PartybrokerClient({self.url!r})"

    async def __aenter__(self) -> PartybrokerClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def drinks(self) -> DrinksOutcome:
        """GET the party's drinks with their current prices."""
        outcome = await self._call("GET", None)
        assert not isinstance(outcome, Recorded)  # interpret() gives Recorded only for POST
        return outcome

    async def buy(self, sales: Sequence[Sale]) -> BuyOutcome:
        """POST sales (by id and/or externalId, in one request); answers with the drinks' new prices."""
        if not sales:
            raise ValueError("buy() needs at least one sale")
        return await self._call("POST", [s.wire() for s in sales])

    async def _call(self, method: Method, payload: list[dict[str, object]] | None) -> BuyOutcome:
        post = method == "POST"
        headers = {"Authorization": self._auth.reveal()}
        content: bytes | None = None
        if payload is not None:
            content = json.dumps(payload, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        status: int | None = None
        content_type = ""
        retry_after: str | None = None
        body = b""
        too_large = False
        broken: str | None = None
        deadline = Deadline.after(self._total_s)
        watch = SendWatch()
        try:
            async with deadline.scope():
                response = await self._http.send(
                    method,
                    self.url,
                    headers=headers,
                    content=content,
                    timeout=deadline.client_timeout(self._connect_s),
                    watch=watch,
                )
                try:
                    status = response.status
                    content_type = response.headers.get("content-type", "")
                    retry_after = response.headers.get("retry-after")
                    try:
                        raw = await read_capped(response, self._max_body)
                        body, too_large = raw.data, raw.too_large
                        if raw.encoding is not None:
                            broken = raw.problem
                    except aiohttp.ClientError as exc:
                        broken = _describe(exc)
                finally:
                    response.release()
        except NOT_SENT as exc:
            # The request never left this machine: nothing can have been booked.
            return Ambiguous(f"cannot connect to Partybroker ({_describe(exc)})", maybe_applied=False)
        except TimeoutError:
            if status is None:
                return Ambiguous(deadline.describe(), maybe_applied=post and watch.may_have_arrived)
            broken = f"body not complete within {self._total_s:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            if status is None:
                return Ambiguous(
                    f"no answer from Partybroker ({_describe(exc)})",
                    maybe_applied=post and watch.may_have_arrived,
                )
            broken = _describe(exc)
        assert status is not None
        return interpret(
            method,
            status,
            content_type,
            body,
            too_large=too_large,
            broken=broken,
            retry_after=retry_after,
        )


def _describe(exc: BaseException) -> str:
    # aiohttp's messages name the host, the URL and the OS error, never headers: no credentials in them.
    text = printable(str(exc), 200) if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
