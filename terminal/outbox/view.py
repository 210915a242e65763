"""One view of every destination's backlog, for ``taptill queue``, ``taptill status`` and ``doctor``.

Counts per destination: pending (held ones included), held (a person settles them), rejected, ambiguous
(the outcome of a request is not known: a pending record that may have been applied, or one given up at
most once) and when the oldest pending record was made. Works on a journal of any schema this taptill
knows (read-only commands migrate a copy in memory).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from terminal.journal import Journal

WALLET = "wallet"


@dataclass(frozen=True)
class Backlog:
    destination: str
    pending: int
    held: int
    rejected: int
    ambiguous: int
    oldest_pending: str | None  # ISO 8601 (UTC) creation time of the oldest pending record

    def age_s(self, now: datetime) -> float | None:
        if self.oldest_pending is None:
            return None
        return (now - datetime.fromisoformat(self.oldest_pending)).total_seconds()

    def as_json(self) -> dict[str, object]:
        return asdict(self)

    def line(self) -> str:
        text = (
            f"{self.destination}: {self.pending} pending, {self.held} held, {self.rejected} rejected, "
            f"{self.ambiguous} ambiguous"
        )
        return text + (f", oldest pending {self.oldest_pending}" if self.oldest_pending else "")


def backlogs(journal: Journal, destinations: tuple[str, ...] = ()) -> list[Backlog]:
    """The wallet's backlog first, then each destination with records in the outbox table (and each of
    ``destinations``, the configured ones, even before their first record)."""
    r = journal.query(
        "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'pending' AND hold = 1), 0),"
        " COALESCE(SUM(state = 'rejected'), 0), COALESCE(SUM(state = 'pending' AND maybe_sent = 1), 0),"
        " MIN(CASE WHEN state = 'pending' THEN created_at END) FROM sales"
    )[0]
    out = [Backlog(WALLET, int(r[0]), int(r[1]), int(r[2]), int(r[3]), r[4])]
    found = journal.query(
        "SELECT destination, COALESCE(SUM(state = 'pending'), 0),"
        " COALESCE(SUM(state = 'pending' AND hold = 1), 0), COALESCE(SUM(state = 'rejected'), 0),"
        " COALESCE(SUM(state = 'ambiguous' OR (state = 'pending' AND maybe_sent = 1)), 0),"
        " MIN(CASE WHEN state = 'pending' THEN created_at END) FROM outbox GROUP BY destination"
        " ORDER BY destination"
    )
    seen = set()
    for d in found:
        seen.add(str(d[0]))
        out.append(Backlog(str(d[0]), int(d[1]), int(d[2]), int(d[3]), int(d[4]), d[5]))
    out += [Backlog(name, 0, 0, 0, 0, None) for name in destinations if name not in seen and name != WALLET]
    return out
