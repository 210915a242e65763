"""The circuit breaker: after the wallet server fails, taps decide offline at once until a probe succeeds."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class ServerHealth:
    """Whether the wallet server is believed reachable; every network adapter reports into it."""

    def __init__(self, on_change: Callable[[bool], None] | None = None) -> None:
        self.online = True
        self.last_problem = ""
        self.on_change = on_change

    def mark_up(self) -> None:
        if not self.online:
            log.warning("wallet server reachable again")
            self._set(True)

    def mark_down(self, problem: str) -> None:
        self.last_problem = problem
        if self.online:
            log.warning("wallet server unreachable (%s): deciding taps offline", problem)
            self._set(False)

    def _set(self, online: bool) -> None:
        self.online = online
        if self.on_change is not None:
            self.on_change(online)
