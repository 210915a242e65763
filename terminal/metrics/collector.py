"""The metric families one scrape exposes (Prometheus naming: ``taptill_…_total`` counters, base units in
names), from the tap path's counters, the device loop's live state and a reading of the journal.

``EXPORTED`` lists every name, so the dashboard and the alert rules can be checked against it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from terminal.metrics.journal_figures import JournalFigures
from terminal.metrics.taps import TapCounts
from terminal.service.loop_lag import LagStats

# Every sample name a scrape can hold (a counter family ``x`` exposes ``x_total``).
EXPORTED = frozenset(
    {
        "taptill_build_info",
        "taptill_taps_total",
        "taptill_decisions_total",
        "taptill_sales_total",
        "taptill_sales_cents_total",
        "taptill_outbox_pending",
        "taptill_outbox_held",
        "taptill_outbox_rejected",
        "taptill_outbox_ambiguous",
        "taptill_outbox_oldest_age_seconds",
        "taptill_sales_to_refund",
        "taptill_event_loop_lag_seconds",
        "taptill_event_loop_stalls_total",
        "taptill_reader_up",
        "taptill_wallet_server_up",
        "taptill_wallet_token_refused",
        "taptill_wallet_last_contact_timestamp_seconds",
        "taptill_journal_readable",
        "taptill_journal_size_bytes",
    }
)


@dataclass(frozen=True)
class LiveState:
    """What the device loop knows now, copied in the loop's thread at scrape time."""

    version: str
    server_online: bool
    token_refused: bool
    last_contact_s: float | None  # unix seconds of the last answer the wallet server gave our token
    reader_online: bool | None  # None: the reader has not reported yet
    lag_ms: dict[str, float]  # p50, p99, max of the last ten minutes of ticks
    lag: LagStats


class ScrapeCollector(Collector):
    """One scrape's families; made anew for each scrape from copies, so ``collect`` reads nothing live."""

    def __init__(self, counts: TapCounts, live: LiveState, figures: JournalFigures) -> None:
        # Copies: the loop goes on counting while the text is rendered.
        self.taps = counts.taps
        self.decisions = dict(counts.decisions)
        self.sales = dict(counts.sales)
        self.cents = dict(counts.cents)
        self.live = live
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        yield from self._tap_path()
        yield from self._journal()
        yield from self._state()

    def _tap_path(self) -> Iterator[Metric]:
        build = GaugeMetricFamily("taptill_build_info", "The taptill version running.", labels=["version"])
        build.add_metric([self.live.version], 1)
        yield build
        yield CounterMetricFamily("taptill_taps", "Cards tapped since the terminal started.", value=self.taps)
        decisions = CounterMetricFamily(
            "taptill_decisions",
            "Taps by what the terminal decided (outcome) and why (reason: how it was approved, or the "
            "decline reason).",
            labels=["outcome", "reason"],
        )
        for (outcome, reason), n in sorted(self.decisions.items()):
            decisions.add_metric([outcome, reason], n)
        yield decisions
        sales = CounterMetricFamily(
            "taptill_sales",
            "Products sold (kind debit) or credited (kind credit) at a tap: booked or approved to be.",
            labels=["product", "kind"],
        )
        cents = CounterMetricFamily(
            "taptill_sales_cents",
            "Money of those sales per product in cents (a cart's amount shared out by the catalog prices).",
            labels=["product", "kind"],
        )
        for (product, kind), n in sorted(self.sales.items()):
            sales.add_metric([product, kind], n)
            cents.add_metric([product, kind], self.cents.get((product, kind), 0))
        yield sales
        yield cents

    def _journal(self) -> Iterator[Metric]:
        f = self.figures
        yield GaugeMetricFamily(
            "taptill_journal_readable", "1 when this scrape could read the journal.", value=int(f.readable)
        )
        yield GaugeMetricFamily(
            "taptill_journal_size_bytes",
            "Size of the journal file and its write-ahead log.",
            value=f.size_bytes,
        )
        if not f.readable:
            return
        names = {
            "pending": "Records waiting to be delivered (held ones included).",
            "held": "Records held for a person to settle (taptill queue, taptill settle).",
            "rejected": "Records the destination refused for good (wallet: only sales served, then refused; "
            "one refused while its guest waited is a declined tap, not counted).",
            "ambiguous": "Records whose request may or may not have been applied.",
        }
        for name, doc in names.items():
            family = GaugeMetricFamily(f"taptill_outbox_{name}", doc, labels=["destination"])
            for b in f.backlogs:
                family.add_metric([b.destination], getattr(b, name))
            yield family
        oldest = GaugeMetricFamily(
            "taptill_outbox_oldest_age_seconds",
            "Age of the oldest record waiting for the destination (0: nothing waits).",
            labels=["destination"],
        )
        for b in f.backlogs:
            oldest.add_metric([b.destination], round(f.oldest_age_s(b), 3))
        yield oldest
        yield GaugeMetricFamily(
            "taptill_sales_to_refund",
            "Sales booked whose guest got nothing (charged, not dispensed), not yet closed by a person.",
            value=f.to_refund,
        )

    def _state(self) -> Iterator[Metric]:
        live = self.live
        # A gauge per statistic, not a summary: the monitor keeps percentiles of a window, no running
        # sum and count (and promtool refuses a "quantile" label on anything but a summary).
        lag = GaugeMetricFamily(
            "taptill_event_loop_lag_seconds",
            "How late the device loop ran over the last ten minutes: stat p50, p99 or max.",
            labels=["stat"],
        )
        for stat in ("p50", "p99", "max"):
            lag.add_metric([stat], live.lag_ms.get(stat, 0.0) / 1000)
        yield lag
        yield CounterMetricFamily(
            "taptill_event_loop_stalls",
            "Times the device loop was held longer than the warning threshold (250 ms).",
            value=live.lag.stalls,
        )
        # 0 until the reader has reported: a terminal whose reader never came up must not look well.
        yield GaugeMetricFamily(
            "taptill_reader_up",
            "1 while the card reader works; 0 while it is offline or has not reported since the start.",
            value=int(live.reader_online is True),
        )
        yield GaugeMetricFamily(
            "taptill_wallet_server_up",
            "1 while the wallet server answers (taps decided online), 0 offline or token refused.",
            value=int(live.server_online),
        )
        yield GaugeMetricFamily(
            "taptill_wallet_token_refused",
            "1 while the wallet server refuses the API token (out of service).",
            value=int(live.token_refused),
        )
        if live.last_contact_s is not None:
            yield GaugeMetricFamily(
                "taptill_wallet_last_contact_timestamp_seconds",
                "When the wallet server last answered a request with this terminal's token (unix time).",
                value=live.last_contact_s,
            )
