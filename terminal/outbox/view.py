"""One view of every destination's backlog, for ``taptill queue``, ``taptill status`` and ``doctor``.

Counts per destination: pending (held ones included), held (a person settles them), rejected (for the
wallet: sales served, then refused; one refused while its guest waited is counted apart), ambiguous
(the outcome of a request is not known: a pending record that may have been applied, or one given up at
most once) and when the oldest pending record was made. Works on a journal of any schema this taptill
knows (read-only commands migrate a copy in memory).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from terminal.journal import REFUSED_AT_TAP_SQL, REJECTED_SQL, Journal

WALLET = "wallet"


@dataclass(frozen=True)
class Backlog:
    destination: str
    pending: int
    held: int
    rejected: int
    ambiguous: int
    oldest_pending: str | None  # ISO 8601 (UTC) creation time of the oldest pending record
    # the wallet's sales refused while the guest waited: declined taps, nothing owed, not in ``rejected``
    refused_at_tap: int = 0

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
        if self.refused_at_tap:
            text += f" ({self.refused_at_tap} more refused at the tap: nothing served, nothing owed)"
        return text + (f", oldest pending {self.oldest_pending}" if self.oldest_pending else "")


def backlogs(journal: Journal, destinations: tuple[str, ...] = ()) -> list[Backlog]:
    """The wallet's backlog first, then each destination with records in the outbox table (and each of
    ``destinations``, the configured ones, even before their first record)."""
    r = journal.query(
        "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'pending' AND hold = 1), 0),"
        f" COALESCE(SUM({REJECTED_SQL}), 0), COALESCE(SUM(state = 'pending' AND maybe_sent = 1), 0),"
        f" MIN(CASE WHEN state = 'pending' THEN created_at END), COALESCE(SUM({REFUSED_AT_TAP_SQL}), 0)"
        " FROM sales"
    )[0]
    # a wallet sale refused while its guest waited is a declined tap, not money rejected: counted apart
    out = [Backlog(WALLET, int(r[0]), int(r[1]), int(r[2]), int(r[3]), r[4], int(r[5]))]
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
