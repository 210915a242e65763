"""GrantClient: ready2order's grant flow with the developer token, typed outcomes, never raising.

A grant access token is asked for, then polled until the account owner approves it and the account token
arrives (seed 004; INTEGRATION-NOTES for the status words ``pending``, ``approved``/``granted``,
``denied``, ``expired``, ``expiresAt`` and the 10-minute expiry). A grant that ready2order no longer knows
(404, 410) is ``Expired``: either way the owner needs a new approval link.
"""

from __future__ import annotations

from urllib.parse import quote

from terminal.ready2order.exchange import Ready2OrderHttp, Ready2OrderSession
from terminal.ready2order.outcomes import Expired, Grant, GrantOutcome, PollOutcome, Refused, Unavailable
from terminal.ready2order.parse import parse_grant, parse_grant_state, read
from terminal.service.secret import Secret

GRANT_PATH = "/developerToken/grantAccessToken"
GONE = (404, 410)  # a grant ready2order no longer knows: ask for a new one


class GrantClient(Ready2OrderSession):
    """The grant calls under ``base_url`` (``https://api.ready2order.com/v1``) with the developer token;
    each call is over within ``timeout_s`` seconds."""

    def __init__(
        self,
        base_url: str,
        developer_token: Secret,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(Ready2OrderHttp(base_url, developer_token, "developer", timeout_s=timeout_s))

    async def request_grant(self, callback_uri: str | None = None) -> GrantOutcome:
        """POST a new grant; ``callback_uri`` (optional) is where ready2order sends the owner afterwards.

        A grant asked for twice costs nothing but a second link, so the request counts as a read."""
        payload: dict[str, object] = {}
        if callback_uri is not None:
            payload["authorizationCallbackUri"] = callback_uri  # the schema's name ("callbackUri" in prose)
        return read(await self._http.call("POST", GRANT_PATH, body=payload), parse_grant, write=False)

    async def poll(self, grant: Grant | str) -> PollOutcome:
        """GET the grant's state; ``Approved`` carries the account token (``approved`` or ``granted``)."""
        token = grant.token if isinstance(grant, Grant) else grant
        answer = await self._http.call("GET", f"{GRANT_PATH}/{quote(token, safe='')}")
        if isinstance(answer, Unavailable | Refused) and answer.status in GONE:
            return Expired(f"ready2order no longer knows the grant (HTTP {answer.status})")
        return read(answer, parse_grant_state, write=False)
