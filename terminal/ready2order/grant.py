"""ready2order's grant flow: a grant access token asked for with the developer token, polled until the
account owner approves it and the account token arrives (seed 004; INTEGRATION-NOTES for the status words
``pending``, ``approved``/``granted``, ``denied``, ``expired``, ``expiresAt`` and the 10-minute expiry).

Every call answers a typed outcome and never raises for the network. A grant that ready2order no longer
knows (404, 410) is ``Expired``: either way the owner needs a new approval link.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from urllib.parse import quote

import httpx

from terminal.model import printable
from terminal.ready2order.exchange import (
    Answer,
    Ready2OrderHttp,
    Refused,
    Unreachable,
    WrongToken,
)
from terminal.service.secret import Secret

GRANT_PATH = "/developerToken/grantAccessToken"
APPROVED = frozenset({"approved", "granted"})  # both spellings are seen
PENDING = frozenset({"pending"})
DENIED = frozenset({"denied", "rejected"})
EXPIRED = frozenset({"expired"})
GONE = (404, 410)  # a grant ready2order no longer knows: ask for a new one
MAX_TOKEN_CHARS = 4096


@dataclass(frozen=True)
class Grant:
    """One grant access token and the page where the owner approves it; ``expires_at`` epoch s if said."""

    token: str
    approval_url: str
    expires_at: float | None = None


@dataclass(frozen=True)
class Pending:
    """The owner has not answered yet."""

    expires_at: float | None = None


@dataclass(frozen=True)
class Approved:
    """The owner approved: ``account_token`` opens the account's data (never print it)."""

    account_token: Secret


@dataclass(frozen=True)
class Denied:
    """The owner refused access."""

    reason: str


@dataclass(frozen=True)
class Expired:
    """The grant ran out (10 minutes) or ready2order forgot it: a new one is needed."""

    reason: str


RequestOutcome = Grant | WrongToken | Refused | Unreachable
PollOutcome = Pending | Approved | Denied | Expired | WrongToken | Refused | Unreachable


class GrantClient:
    """The grant calls under ``base_url`` (``https://api.ready2order.com/v1``) with the developer token;
    each call is over within ``timeout_s`` seconds."""

    def __init__(
        self,
        base_url: str,
        developer_token: Secret,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = Ready2OrderHttp(
            base_url, developer_token, "developer", timeout_s=timeout_s, transport=transport
        )

    async def __aenter__(self) -> GrantClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request_grant(self, callback_uri: str | None = None) -> RequestOutcome:
        """POST a new grant; ``callback_uri`` (optional) is where ready2order sends the owner afterwards."""
        payload: dict[str, object] = {}
        if callback_uri is not None:
            payload["authorizationCallbackUri"] = callback_uri  # the schema's name ("callbackUri" in prose)
        res = await self._http.call("POST", GRANT_PATH, payload=payload)
        if not isinstance(res, Answer):
            return res
        data = res.data
        if not isinstance(data, dict):
            return Unreachable("the grant answer is not a JSON object: not the ready2order API")
        token = data.get("grantAccessToken")
        url = data.get("grantAccessUri")
        if not _is_token(token):
            return Unreachable("the grant answer has no grantAccessToken: not the ready2order API")
        assert isinstance(token, str)
        if not isinstance(url, str) or not url.lower().startswith(("https://", "http://")):
            return Unreachable("the grant answer has no grantAccessUri to approve at")
        # the URL reaches the console and the display: one printable line, nothing a terminal obeys
        return Grant(token, printable(url, 2000), _epoch(data.get("expiresAt")))

    async def poll(self, grant: Grant | str) -> PollOutcome:
        """GET the grant's state; ``Approved`` carries the account token (``approved`` or ``granted``)."""
        token = grant.token if isinstance(grant, Grant) else grant
        res = await self._http.call("GET", f"{GRANT_PATH}/{quote(token, safe='')}")
        if isinstance(res, Refused) and res.status in GONE:
            return Expired(res.reason)
        if not isinstance(res, Answer):
            return res
        data = res.data
        if not isinstance(data, dict):
            return Unreachable("the grant state is not a JSON object: not the ready2order API")
        raw_status = data.get("status")
        status = raw_status.strip().lower() if isinstance(raw_status, str) else None
        account_token = data.get("accountToken")
        if status in APPROVED or (status is None and account_token is not None):
            if not _is_token(account_token):
                # approved, but the token is not there (yet): ask again rather than store nothing
                return Pending(_epoch(data.get("expiresAt")))
            assert isinstance(account_token, str)
            return Approved(Secret(account_token))
        if status in PENDING:
            return Pending(_epoch(data.get("expiresAt")))
        if status in DENIED:
            return Denied(f"status {status}")
        if status in EXPIRED:
            return Expired(f"status {status}")
        shown = printable(str(raw_status), 40)
        return Unreachable(f"the grant state says status {shown!r}, which the grant flow does not have")


def _is_token(value: object) -> bool:
    """A bearer token: non-empty printable text without spaces (it goes into a header and a file)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TOKEN_CHARS
        and value.isprintable()
        and not any(c.isspace() for c in value)
    )


def _epoch(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return float(value)
    return None
