"""The emulator's grant flow: grants asked for with the developer token, approved or denied by a test
(or a person, through the emulator's ``/_emulator/grants``), expiring after 10 minutes on the emulator's
clock (seed 004, INTEGRATION-NOTES).

What the documents leave open, and how the desk answers it:
- ``POST /v1/developerToken/grantAccessToken`` answers 200 with ``grantAccessToken``, ``grantAccessUri``,
  ``expiresAt`` (epoch seconds) and ``status`` ``"pending"``; a body, if any, must be JSON.
- ``GET /v1/developerToken/grantAccessToken/{token}`` answers 200 with ``status`` ``pending``,
  ``approved`` (or ``granted``, the other spelling seen; ``approved_word``) with ``accountToken``,
  ``denied`` or ``expired``; a token it never issued answers 404.
- The developer token is the only one taken on these paths: an account token answers 403, a missing or
  unknown one 401, in ready2order's error shape ``{"error": true, "msg": ...}``.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote

from terminal.emulator.clock import EmulatorClock
from terminal.emulator.ready2order.wire import bearer, error_response
from terminal.emulator.wallet.routes import ApiRequest, ApiResponse, json_response

GRANT_LIFETIME_S = 600.0
GRANT_PATH = "/v1/developerToken/grantAccessToken"
APPROVAL_BASE = "https://app.ready2order.com/grant-access"

State = Literal["pending", "approved", "denied"]


@dataclass
class _Grant:
    token: str
    expires_at: float
    state: State = "pending"
    account_token: str | None = None


class GrantDesk:
    """Answers the grant paths (``handle`` gives None for every other path); thread-safe.

    ``on_account_token`` hears every account token the desk issues, so the account endpoints take it;
    ``is_account_token`` tells the desk of account tokens it did not issue (seeded ones), which answer
    403 on its paths like its own.
    """

    def __init__(
        self,
        clock: EmulatorClock,
        developer_token: str,
        on_account_token: Callable[[str], None],
        *,
        approval_base: str = APPROVAL_BASE,
        approved_word: str = "approved",
        lifetime_s: float = GRANT_LIFETIME_S,
        is_account_token: Callable[[str], bool] | None = None,
    ) -> None:
        self.clock = clock
        self.developer_token = developer_token
        self.approval_base = approval_base
        self.approved_word = approved_word
        self.lifetime_s = lifetime_s
        self._on_account_token = on_account_token
        self._is_account_token = is_account_token or (lambda token: False)
        self._lock = threading.Lock()
        self._grants: dict[str, _Grant] = {}
        self._issued: set[str] = set()

    # -- HTTP ------------------------------------------------------------------------------------------

    def handle(self, req: ApiRequest) -> ApiResponse | None:
        """The answer to a grant path, or None when ``req`` is for another path."""
        path = req.path.rstrip("/")
        if path == GRANT_PATH:
            if req.method != "POST":
                return _not_allowed(req.method, "POST")
            return self._checked(req) or self._create(req)
        if path.startswith(GRANT_PATH + "/") and "/" not in path[len(GRANT_PATH) + 1 :]:
            if req.method != "GET":
                return _not_allowed(req.method, "GET")
            return self._checked(req) or self._state(unquote(path[len(GRANT_PATH) + 1 :]))
        return None

    def _checked(self, req: ApiRequest) -> ApiResponse | None:
        given = bearer(req)
        if given is None:
            return error_response(401, "Missing or malformed Authorization header")
        if hmac.compare_digest(given.encode(), self.developer_token.encode()):
            return None
        with self._lock:
            issued = given in self._issued
        if issued or self._is_account_token(given):
            return error_response(403, "This endpoint needs a developer token, not an account token")
        return error_response(401, "Invalid token")

    def _create(self, req: ApiRequest) -> ApiResponse:
        if req.body.strip():
            try:
                body = json.loads(req.body)
            except (UnicodeDecodeError, ValueError):
                return error_response(400, "The body is not valid JSON")
            if not isinstance(body, dict):
                return error_response(400, "The body must be a JSON object")
        token = secrets.token_urlsafe(24)
        expires_at = self.clock.now() + self.lifetime_s
        with self._lock:
            self._grants[token] = _Grant(token, expires_at)
        return json_response(
            200,
            {
                "grantAccessToken": token,
                "grantAccessUri": f"{self.approval_base}?grantAccessToken={quote(token, safe='')}",
                "expiresAt": int(expires_at),
                "status": "pending",
            },
        )

    def _state(self, token: str) -> ApiResponse:
        now = self.clock.now()
        with self._lock:
            grant = self._grants.get(token)
            if grant is None:
                return error_response(404, "grantAccessToken not found")
            state, account_token, expires_at = grant.state, grant.account_token, grant.expires_at
        body: dict[str, object] = {"grantAccessToken": token, "expiresAt": int(expires_at)}
        if state == "approved":
            body.update(status=self.approved_word, accountToken=account_token)
        elif state == "pending" and now >= expires_at:
            body["status"] = "expired"
        else:
            body["status"] = state
        return json_response(200, body)

    # -- the owner's side (tests, the demo) ---------------------------------------------------------------

    def pending(self) -> list[str]:
        """The grant tokens still waiting for the owner (not yet expired), oldest first."""
        now = self.clock.now()
        with self._lock:
            return [g.token for g in self._grants.values() if g.state == "pending" and now < g.expires_at]

    @property
    def grants_made(self) -> int:
        """How many grants were asked for."""
        with self._lock:
            return len(self._grants)

    def approve(self, grant_token: str) -> str:
        """The owner approves a pending grant: returns the new account token (also to on_account_token).

        Raises KeyError for a token never issued, ValueError for a grant expired or already answered."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            grant = self._pending_grant(grant_token)
            grant.state, grant.account_token = "approved", token
            self._issued.add(token)
        self._on_account_token(token)
        return token

    def deny(self, grant_token: str) -> None:
        """The owner refuses a pending grant (KeyError, ValueError as for ``approve``)."""
        with self._lock:
            self._pending_grant(grant_token).state = "denied"

    def _pending_grant(self, grant_token: str) -> _Grant:
        grant = self._grants[grant_token]
        if grant.state != "pending":
            raise ValueError(f"the grant is already {grant.state}")
        if self.clock.now() >= grant.expires_at:
            raise ValueError("the grant has expired")
        return grant


def _not_allowed(method: str, allowed: str) -> ApiResponse:
    response = error_response(405, f"Method {method} not allowed")
    response.headers["Allow"] = allowed
    return response
