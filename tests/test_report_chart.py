"""``taptill report --chart``'s time axis: a short shift (an hour or less, or nothing sold) is drawn on whole
local hours at least one hour wide with hour ticks; drawn by matplotlib from a real journal to a real PNG."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from terminal.journal import Journal
from terminal.report.chart import chart_figure, draw_chart, pyplot
from terminal.report.period import Period
from terminal.report.selection import sales_booked_in, sales_in
from terminal.report.shift import ShiftReport, shift_report
from tests.terminal_lab import journal_sale

T0 = datetime(2025, 6, 1, 18, 0, tzinfo=UTC)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """Two sales at 18:15 and 18:25 UTC, booked at once."""
    journal = Journal.open(tmp_path / "journal.db")
    for minutes in (15, 25):
        at = T0 + timedelta(minutes=minutes)
        sale = journal_sale(journal, ["espresso"], -250, attempting=True, attempted_at=at.timestamp())
        journal.execute(
            "UPDATE sales SET created_at = ? WHERE id = ?", (at.isoformat(timespec="milliseconds"), sale.id)
        )
        journal.mark_done(sale.id, 1750, approved=True)
    yield journal
    journal.close()


def _report(journal: Journal, span: Period) -> ShiftReport:
    return shift_report(sales_in(journal, span), span, booked=sales_booked_in(journal, span))


def _axis(report: ShiftReport) -> tuple[datetime, datetime, list[datetime]]:
    """The x axis's ends and its major ticks, as aware datetimes, read off the figure."""
    import matplotlib.dates

    dates: Any = matplotlib.dates  # partly untyped
    fig = chart_figure(report)
    try:
        axis = fig.axes[-1]
        left, right = axis.get_xlim()
        ticks = [dates.num2date(t) for t in axis.get_xticks()]
        return dates.num2date(left), dates.num2date(right), ticks
    finally:
        pyplot().close(fig)


def _local_hour(moment: datetime) -> datetime:
    return moment.astimezone().replace(minute=0, second=0, microsecond=0)


@pytest.mark.parametrize(
    ("since", "until"),
    [
        (T0 + timedelta(minutes=10), T0 + timedelta(minutes=40)),  # half an hour, inside one hour
        (T0, T0 + timedelta(hours=1)),  # exactly one hour
        (T0 + timedelta(minutes=15), T0 + timedelta(minutes=15, microseconds=1)),  # an instant
    ],
)
def test_a_period_of_an_hour_or_less_is_drawn_on_a_whole_hour(
    journal: Journal, since: datetime, until: datetime
) -> None:
    left, right, ticks = _axis(_report(journal, Period(since, until)))
    assert (left, right) == (_local_hour(since), _local_hour(since) + timedelta(hours=1))
    assert ticks and all(t.minute == t.second == 0 for t in ticks), ticks
    assert all(left <= t <= right for t in ticks)


def test_a_period_crossing_an_hour_spans_both_hours_and_one_with_nothing_sold_one_hour(
    journal: Journal,
) -> None:
    left, right, ticks = _axis(
        _report(journal, Period(T0 + timedelta(minutes=50), T0 + timedelta(minutes=70)))
    )
    assert (left, right) == (_local_hour(T0), _local_hour(T0) + timedelta(hours=2))
    assert {t.astimezone(UTC).hour for t in ticks} >= {18, 19, 20}
    empty = _report(journal, Period(T0 + timedelta(days=1), None))  # nothing sold, open end
    left, right, _ = _axis(empty)
    assert right - left == timedelta(hours=1) and left == _local_hour(T0 + timedelta(days=1))
    open_start = _report(journal, Period(None, None))  # the whole journal: its hours with sales
    assert _axis(open_start)[:2] == (_local_hour(T0), _local_hour(T0) + timedelta(hours=1))


def test_the_short_shift_is_a_real_png(journal: Journal, tmp_path: Path) -> None:
    png = tmp_path / "short.png"
    draw_chart(_report(journal, Period(T0 + timedelta(minutes=10), T0 + timedelta(minutes=40))), png)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (800, 550)
        assert len(image.getcolors(1 << 16) or []) > 10, "the bars and labels are drawn"
