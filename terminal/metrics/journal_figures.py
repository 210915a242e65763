"""The metrics read from the journal at scrape time: backlog per destination, sales to refund, file size.

Read on a read-only connection of its own, in one worker thread, so a scrape never holds the device
loop and never writes (the terminal's own connection keeps writing meanwhile; WAL lets both go on).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from terminal.journal import Journal
from terminal.outbox.view import Backlog, backlogs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JournalFigures:
    """One reading of the journal; ``readable`` False: it could not be read (the rest is empty)."""

    readable: bool
    read_at: datetime  # when it was read (UTC)
    size_bytes: int  # the journal file and its write-ahead log
    backlogs: tuple[Backlog, ...] = ()
    to_refund: int = 0  # sales booked whose guest got nothing, not yet closed by a person

    def oldest_age_s(self, backlog: Backlog) -> float:
        """Seconds since the oldest pending record of ``backlog`` was made; 0 with nothing pending."""
        age = backlog.age_s(self.read_at)
        return max(0.0, age) if age is not None else 0.0


class JournalReader:
    """Reads JournalFigures in its own thread; ``close`` when the terminal stops."""

    def __init__(self, path: Path, destinations: tuple[str, ...]) -> None:
        """``destinations``: the configured outbox destinations, listed even before their first record."""
        self.path = path
        self.destinations = destinations
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-journal")
        self._journal: Journal | None = None  # used only in the pool's one thread

    def read(self) -> JournalFigures:
        """Runs in the pool's thread; never raises (an unreadable journal is a figure of its own)."""
        size = sum(_size(Path(f"{self.path}{suffix}")) for suffix in ("", "-wal"))
        try:
            if self._journal is None:
                self._journal = Journal.open_read_only(self.path)
            journal = self._journal
            status = journal.status()
            found = tuple(backlogs(journal, self.destinations))
        except Exception as exc:  # JournalError, sqlite3 errors: the scrape says so, the terminal sells on
            log.warning("metrics: cannot read the journal (%s)", exc)
            self._drop()
            return JournalFigures(readable=False, size_bytes=size, read_at=datetime.now(UTC))
        return JournalFigures(
            readable=True,
            backlogs=found,
            to_refund=status.to_refund,
            size_bytes=size,
            read_at=datetime.now(UTC),
        )

    def close(self) -> None:
        self.pool.submit(self._drop).result()
        self.pool.shutdown(wait=True)

    def _drop(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
