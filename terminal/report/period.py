"""The period a report or export covers: ``--since`` / ``--until`` parsed into aware datetimes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

WORDS = ("today", "yesterday")
EXAMPLES = "2025-06-01, 2025-06-01T18:00, 2025-06-01 18:00+02:00, today or yesterday"


class PeriodError(ValueError):
    """A --since or --until that is no time; the message is one line with the fix."""


@dataclass(frozen=True)
class Period:
    """From ``since`` (included) to ``until`` (excluded); None leaves that end open. Both aware."""

    since: datetime | None = None
    until: datetime | None = None

    def bounds(self) -> tuple[str | None, str | None]:
        """The ends as the journal writes ``created_at`` (UTC, ISO 8601 with milliseconds), so they compare
        with it as text: ``created_at >= since AND created_at < until``."""
        return (_journal_time(self.since), _journal_time(self.until))

    def epoch_bounds(self) -> tuple[float | None, float | None]:
        """The ends as epoch seconds, as the journal writes ``attempted_at``."""
        return (
            None if self.since is None else self.since.timestamp(),
            None if self.until is None else self.until.timestamp(),
        )

    def contains(self, created_at: str) -> bool:
        """Whether a journal time (``created_at``) lies in the period."""
        since, until = self.bounds()
        return (since is None or created_at >= since) and (until is None or created_at < until)


def parse_time(text: str, flag: str, *, now: datetime | None = None, zone: tzinfo | None = None) -> datetime:
    """``text`` as an aware datetime: an ISO date (its midnight), an ISO date-time (local time in ``zone``,
    default the machine's, unless it carries an offset), ``today`` or ``yesterday`` (their local midnight).
    ``flag`` names the option in the error. Raises PeriodError."""
    word = text.strip().lower()
    if word in WORDS:
        current = now or datetime.now(UTC)
        today = (current.astimezone(zone) if zone else current.astimezone()).date()
        day = today if word == "today" else today - timedelta(days=1)
        return _local(datetime.combine(day, time(0, 0)), zone, flag, text)
    try:
        if len(word) == 10:
            return _local(datetime.combine(date.fromisoformat(word), time(0, 0)), zone, flag, text)
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PeriodError(f"{flag} {text!r} is no time; give e.g. {EXAMPLES}") from None
    return moment if moment.tzinfo is not None else _local(moment, zone, flag, text)


def period(
    since: str | None, until: str | None, *, now: datetime | None = None, zone: tzinfo | None = None
) -> Period:
    """The period of ``--since`` and ``--until`` (either may be None). Raises PeriodError, also when
    ``until`` is not after ``since``."""
    start = None if since is None else parse_time(since, "--since", now=now, zone=zone)
    end = None if until is None else parse_time(until, "--until", now=now, zone=zone)
    if start is not None and end is not None and end <= start:
        raise PeriodError(f"--until {until!r} is not after --since {since!r}; swap them or widen the period")
    return Period(start, end)


def _local(naive: datetime, zone: tzinfo | None, flag: str, text: str) -> datetime:
    """``naive`` read as a wall-clock time in ``zone``, or in the machine's own zone (its offset on that
    day, so a summer evening is read in summer time even in winter). A wall-clock time the zone skips
    (spring forward) or shows twice (autumn back) is refused: either reading would be a guess that moves
    the period by an hour. Raises PeriodError naming the offsets that say which is meant."""
    first, second = (_aware(naive.replace(fold=fold), zone) for fold in (0, 1))
    if first.utcoffset() == second.utcoffset():
        return first
    shown = naive.isoformat(timespec="minutes")
    where = "the local time zone" if zone is None else f"time zone {zone}"
    if all(_wall(m, zone) != naive for m in (first, second)):
        raise PeriodError(
            f"{flag} {text!r}: {shown} does not exist in {where} (the clocks skip it); give an offset, "
            f"e.g. {shown}{_offset(first)}, or a time outside the skipped hour"
        )
    raise PeriodError(
        f"{flag} {text!r}: {shown} happens twice in {where} (the clocks go back); give an offset: "
        f"{shown}{_offset(first)} for the first, {shown}{_offset(second)} for the second"
    )


def _aware(naive: datetime, zone: tzinfo | None) -> datetime:
    return naive.replace(tzinfo=zone) if zone is not None else naive.astimezone()


def _wall(moment: datetime, zone: tzinfo | None) -> datetime:
    """The wall-clock time ``moment`` is in ``zone`` (or the machine's zone), without its zone."""
    utc = moment.astimezone(UTC)
    return (utc.astimezone(zone) if zone is not None else utc.astimezone()).replace(tzinfo=None, fold=0)


def _offset(moment: datetime) -> str:
    """``moment``'s UTC offset as ISO 8601 writes it: ``+02:00``."""
    return moment.isoformat()[-6:]


def _journal_time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="milliseconds")
