"""The business date a venue's POS files a moment under: its business day runs past midnight.

A local wall time before ``starts`` (``[brink] business_day_starts``, "06:00" by default) belongs to the
previous calendar day's business date: 01:30 on the 16th is still the 15th's night. GetParty asks for the
party of that date (seed 003: "The Current Business Date of the location").
"""

from __future__ import annotations

import datetime as dt

DEFAULT_STARTS = dt.time(6, 0)


def business_date(local: dt.datetime, starts: dt.time = DEFAULT_STARTS) -> dt.date:
    """The business date of ``local``, a wall time at the venue (naive, or aware: its own wall clock is
    read, never converted): its calendar date from ``starts`` on, the day before until then."""
    if local.time().replace(tzinfo=None) >= starts:
        return local.date()
    return local.date() - dt.timedelta(days=1)


def parse_day_start(text: str) -> dt.time:
    """``"HH:MM"`` (24 h) as a time; raises ValueError with the expected form."""
    hours, sep, minutes = text.partition(":")
    digits = (hours + minutes).isascii() and (hours + minutes).isdigit()
    if sep and len(hours) == 2 and len(minutes) == 2 and digits:
        h, m = int(hours), int(minutes)
        if h < 24 and m < 60:
            return dt.time(h, m)
    raise ValueError(f'{text!r} is not a time of day as HH:MM (24 h), e.g. "06:00"')
