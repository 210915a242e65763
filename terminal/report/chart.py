"""``taptill report --chart``: sales and money per hour as a PNG, drawn by matplotlib (the [chart] extra)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from terminal.report.shift import ShiftReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = (
    "--chart needs matplotlib: install taptill[chart] (pip install 'taptill[chart]'), then run it again"
)
HOUR = timedelta(hours=1)
MAX_HOUR_TICKS = 12  # more would overlap at 8 inches wide: a longer period ticks every few hours
HOUR_TICKS_UP_TO = 48  # hours; a longer period's axis is ticked by matplotlib's own choice of days


class ChartUnavailable(Exception):
    """matplotlib is not installed; the message says how to install it."""


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend; raises ChartUnavailable when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise ChartUnavailable(INSTALL_HINT) from None
    matplotlib.use("Agg")  # files only: no display on a Pi or a server
    import matplotlib.pyplot as plt

    return plt


def time_axis(report: ShiftReport, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The x axis's ends: the period widened to whole local hours, at least one hour wide, so a short
    shift (or an empty one) still reads as a clock; an open end is the first or last hour with sales
    (or the current hour when there are none)."""
    hours = [h.hour for h in report.hours]
    since, until = report.period.since, report.period.until
    start = _hour_of(since) if since is not None else hours[0] if hours else None
    end = _hour_of(until - timedelta.resolution) + HOUR if until is not None else None
    if end is None and hours:
        end = hours[-1] + HOUR
    if start is None:
        start = end - HOUR if end is not None else _hour_of(now or datetime.now().astimezone())
    return start, max(end or start, start + HOUR)


def chart_figure(report: ShiftReport, currency: str = "EUR", title: str = "") -> Figure:
    """The chart as a matplotlib figure: sales per hour (debits, and top-ups) above, their money per hour
    below, on a time axis of whole local hours (``time_axis``). The caller closes it (``pyplot().close``).
    Raises ChartUnavailable without matplotlib."""
    plt = pyplot()
    import matplotlib.dates

    dates: Any = matplotlib.dates  # partly untyped: used as Any, like pyplot

    start, end = time_axis(report)
    local = start.tzinfo
    slot = 0.4 / 24  # a bar's width in days (matplotlib's unit for dates): two bars fill 80 % of an hour
    middle = [dates.date2num(h.hour + HOUR / 2) for h in report.hours]
    left, right = [x - slot / 2 for x in middle], [x + slot / 2 for x in middle]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True, dpi=100)
    top.bar(left, [h.debits.count for h in report.hours], slot, label="sales")
    top.bar(right, [h.topups.count for h in report.hours], slot, label="top-ups")
    top.set_ylabel("count")
    top.legend(loc="upper left")
    # floats only to place bars on the axis; every figure printed comes from integer cents
    bottom.bar(left, [h.debits.cents / 100 for h in report.hours], slot, label=f"sold ({currency})")
    bottom.bar(right, [h.topups.cents / 100 for h in report.hours], slot, label=f"topped up ({currency})")
    bottom.set_ylabel(currency)
    bottom.legend(loc="upper left")
    bottom.set_xlim(dates.date2num(start), dates.date2num(end))
    span = (end - start) / HOUR
    if span <= HOUR_TICKS_UP_TO:
        every = max(1, math.ceil(span / MAX_HOUR_TICKS))
        bottom.xaxis.set_major_locator(dates.HourLocator(interval=every, tz=local))
        bottom.xaxis.set_major_formatter(dates.DateFormatter("%d.%m. %H:00", tz=local))
    else:
        locator = dates.AutoDateLocator(tz=local)
        bottom.xaxis.set_major_locator(locator)
        bottom.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator, tz=local))
    fig.autofmt_xdate(rotation=45, ha="right")  # the labels are made when drawn: set on the axis
    if not report.hours:
        top.text(0.5, 0.5, "nothing sold in this period", ha="center", transform=top.transAxes)
    fig.suptitle(title or "Sales and money per hour")
    fig.tight_layout()
    return fig  # type: ignore[no-any-return]  # pyplot() is Any: matplotlib is optional


def draw_chart(report: ShiftReport, path: Path, currency: str = "EUR", title: str = "") -> None:
    """Write ``chart_figure`` as a PNG to ``path``. Raises ChartUnavailable without matplotlib, OSError
    when ``path`` cannot be written."""
    fig = chart_figure(report, currency, title)
    try:
        fig.savefig(path, format="png")
    finally:
        pyplot().close(fig)


def _hour_of(moment: datetime) -> datetime:
    """The local hour ``moment`` lies in (its start)."""
    return moment.astimezone().replace(minute=0, second=0, microsecond=0)
