"""How long a destination without an idempotency key waits before looking whether its last request landed."""

from __future__ import annotations

from collections.abc import Callable, Sequence

SLACK_S = 1.0  # beyond the client's own deadline: a request that left just before it may still arrive


class LandingWindow:
    """A record's last request can land until ``timeout_s`` + ``SLACK_S`` seconds (monotonic) after it left;
    a record with no request sent by this process counts from the start (its request may be from before a
    restart). Looking earlier could miss a request still on its way and send the record twice."""

    def __init__(self, timeout_s: float, monotonic: Callable[[], float]) -> None:
        self.after_s = timeout_s + SLACK_S
        self.monotonic = monotonic
        self._started = monotonic()
        self._sent: dict[int, float] = {}  # record id -> monotonic time its latest request went out

    def sent(self, record_id: int) -> None:
        """The record's request is about to go out."""
        self._sent[record_id] = self.monotonic()

    def forget(self, record_ids: Sequence[int]) -> None:
        for rid in record_ids:
            self._sent.pop(rid, None)

    def wait_s(self, record_id: int) -> float:
        """Seconds until the record's last request can no longer land (0 or less: look now)."""
        return self._sent.get(record_id, self._started) + self.after_s - self.monotonic()
