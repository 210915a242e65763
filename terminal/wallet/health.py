"""The circuit breaker: after the wallet server fails, taps decide offline at once until a probe succeeds.

A server that refuses the terminal's API token (401: revoked or wrong) is a state of its own: the
terminal is out of service, not offline, since a sale it took could not be booked until a person acts.
Any answer the server gives to the token again (a probe, a refresh) ends it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Where the device loop keeps, for `taptill status`: {"pid", "refused": the server's reason or None, "since"}
TOKEN_CACHE_KEY = "wallet_token"
# Where the device loop keeps, for `taptill status`: the server's state as the running terminal sees it
# ({"pid", "online", "refused", "since", "problem"}), written each time it changes.
SERVER_CACHE_KEY = "wallet_server"


def server_record(health: ServerHealth, pid: int, since: float) -> dict[str, object]:
    """What `taptill status` shows of ``health``; ``since``: wall-clock seconds of the last change."""
    return {
        "pid": pid,
        "online": health.online,
        "refused": health.token_refused,
        "since": since,
        "problem": "" if health.online else health.last_problem,
    }


def server_summary(record: dict[str, object]) -> str:
    """One line for `taptill status` from a record ``server_record`` wrote."""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(str(record.get("since") or 0))))
    if record.get("refused"):
        return f"TOKEN REFUSED since {since} ({record['refused']}): out of service"
    if record.get("online"):
        return f"online since {since}"
    return f"OFFLINE since {since} ({record.get('problem')}): taps are decided offline"


class ServerHealth:
    """Whether the wallet server is believed reachable; every network adapter reports into it."""

    def __init__(self, on_change: Callable[[bool], None] | None = None) -> None:
        self.online = True
        self.last_problem = ""
        self.token_refused: str | None = None  # the server's reason while it refuses the API token
        self.last_ok_at: float | None = None  # wall clock (unix s) of the last answer to our token: metrics
        self.on_change = on_change

    def mark_up(self) -> None:
        """The server answered a request with the terminal's token (so it accepts the token)."""
        self.last_ok_at = time.time()
        refused, self.token_refused = self.token_refused, None
        if refused is not None:
            log.warning("wallet server accepts the API token again: selling")
        elif not self.online:
            log.warning("wallet server reachable again")
        if refused is not None or not self.online:
            self._set(True)

    def mark_down(self, problem: str, status: int | None = None) -> None:
        """The server did not give a usable answer: ``status`` is its HTTP error status when it answered
        (5xx: it is up, and says what is wrong), None when it could not be reached at all."""
        self.last_problem = problem
        if self.online:
            said = "unreachable" if status is None else "answers with an error"
            log.warning("wallet server %s (%s): deciding taps offline", said, problem)
            self._set(False)

    def mark_token_refused(self, reason: str) -> None:
        """The server refused the API token (401): out of service until it accepts it again."""
        self.last_problem = f"the API token is refused ({reason})"
        if self.token_refused is None:
            log.error("wallet server refuses the API token (%s): out of service until it accepts it", reason)
            self.token_refused = reason
            self._set(False)  # taps are not even looked up; the outbox probes until it is accepted

    def _set(self, online: bool) -> None:
        self.online = online
        if self.on_change is not None:
            self.on_change(online)
