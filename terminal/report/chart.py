"""``taptill report --chart``: sales and money per hour as a PNG, drawn by matplotlib (the [chart] extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from terminal.report.shift import ShiftReport

INSTALL_HINT = (
    "--chart needs matplotlib: install taptill[chart] (pip install 'taptill[chart]'), then run it again"
)


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


def draw_chart(report: ShiftReport, path: Path, currency: str = "EUR", title: str = "") -> None:
    """Write a PNG to ``path``: sales per hour (debits, and top-ups) above, their money per hour below.
    Raises ChartUnavailable without matplotlib, OSError when ``path`` cannot be written."""
    plt = pyplot()
    hours = [h.hour.strftime("%d.%m. %H:00") for h in report.hours]
    where = list(range(len(hours)))
    width = 0.4
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True, dpi=100)
    try:
        left, right = [x - width / 2 for x in where], [x + width / 2 for x in where]
        top.bar(left, [h.debits.count for h in report.hours], width, label="sales")
        top.bar(right, [h.topups.count for h in report.hours], width, label="top-ups")
        top.set_ylabel("count")
        top.legend(loc="upper left")
        # floats only to place bars on the axis; every figure printed comes from integer cents
        sold = [h.debits.cents / 100 for h in report.hours]
        credited = [h.topups.cents / 100 for h in report.hours]
        bottom.bar(left, sold, width, label=f"sold ({currency})")
        bottom.bar(right, credited, width, label=f"topped up ({currency})")
        bottom.set_ylabel(currency)
        bottom.legend(loc="upper left")
        bottom.set_xticks(where, hours, rotation=45, ha="right")
        bottom.set_xlim(-0.75, max(len(hours), 4) - 0.25)  # a short shift's bars keep a bar's width
        if not hours:
            top.text(0.5, 0.5, "nothing sold in this period", ha="center", transform=top.transAxes)
        fig.suptitle(title or "Sales and money per hour")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
