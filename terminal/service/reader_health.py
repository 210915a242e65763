"""How the running terminal's card reader is doing, kept in the journal for `taptill status` and `doctor`.

The device loop records every change the reader reports; the other commands read the record back, and
trust it only while the `taptill run` that wrote it still holds the state directory (state_lock).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

CACHE_KEY = "reader_health"
STABLE_S = 60.0  # a reader online this long has recovered: its failures no longer count
DOWN_FAIL_S = 30.0  # offline this long, the terminal cannot sell: doctor FAILs
FAILURES_FAIL = 3  # offline after this many failures in a row: doctor FAILs at once


@dataclass
class ReaderHealth:
    """The reader's last reported state; times are wall-clock seconds since the epoch (for a person)."""

    pid: int  # the `taptill run` that keeps this record
    online: bool | None = None  # None: the reader has not reported yet
    since: float = 0.0  # when it last went online or offline
    failures: int = 0  # times it went offline since it last stayed online STABLE_S
    detail: str = ""

    def changed(self, online: bool, detail: str, now: float) -> None:
        """The reader reported ``online`` (a reader reports each failure, even while offline)."""
        if not online:
            recovered = self.online is True and now - self.since >= STABLE_S
            self.failures = 1 if recovered else self.failures + 1
        if online is not self.online:
            self.since = now
        self.online = online
        self.detail = detail

    def problem(self, now: float) -> str | None:
        """Why the terminal cannot sell because of its reader, in one line; None while it can."""
        if self.online is not False:
            return None
        down = now - self.since
        if down < DOWN_FAIL_S and self.failures < FAILURES_FAIL:
            return None
        return f"the card reader is offline since {_clock(self.since)} ({self._failures()}): {self.detail}"

    def summary(self, now: float) -> str:
        """One line for `taptill status`."""
        if self.online is None:
            return "not reported yet"
        if self.online:
            recent = self.failures and now - self.since < STABLE_S
            return f"online since {_clock(self.since)}" + (f" after {self._failures()}" if recent else "")
        return f"OFFLINE since {_clock(self.since)} ({self._failures()}): {self.detail}"

    def _failures(self) -> str:
        return f"{self.failures} failure{'s' if self.failures != 1 else ''} in a row"

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> ReaderHealth | None:
        """The record as stored, or None for one this version cannot read."""
        if not isinstance(data, dict):
            return None
        try:
            online = data.get("online")
            return cls(
                pid=int(data["pid"]),
                online=None if online is None else bool(online),
                since=float(data.get("since", 0.0)),
                failures=int(data.get("failures", 0)),
                detail=str(data.get("detail", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
