"""Owns the metrics of one running terminal: the tap path's counters, the journal reader and the endpoint.

Imported by ``terminal.service.run`` only when ``[metrics]`` is configured, so prometheus_client and this
package stay out of a terminal's start-up otherwise.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from terminal import __version__
from terminal.device_loop import DeviceLoop
from terminal.metrics.collector import LiveState, ScrapeCollector
from terminal.metrics.config import MetricsConfig
from terminal.metrics.endpoint import MetricsEndpoint
from terminal.metrics.journal_figures import JournalReader
from terminal.metrics.taps import TapCounts
from terminal.service.secret import Secret


class MetricsRuntime:
    """Counts for ``device`` (hands it its TapCounts) and serves them; start and stop in its loop."""

    def __init__(
        self,
        cfg: MetricsConfig,
        device: DeviceLoop,
        journal_path: Path,
        destinations: tuple[str, ...],
        token: Secret | None,
    ) -> None:
        self.counts = TapCounts()
        device.counts = self.counts
        self.device = device
        self.reader = JournalReader(journal_path, destinations)
        self.endpoint = MetricsEndpoint(cfg.host, cfg.port, self.render, token)

    async def start(self) -> None:
        """Listen; EndpointError with one line when it cannot."""
        await self.endpoint.start()

    async def stop(self) -> None:
        await self.endpoint.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.reader.close)

    async def render(self) -> bytes:
        """One scrape: the journal read in the reader's thread, the rest copied here in the loop."""
        figures = await asyncio.get_running_loop().run_in_executor(self.reader.pool, self.reader.read)
        d = self.device
        live = LiveState(
            version=__version__,
            server_online=d.health.online,
            token_refused=d.health.token_refused is not None,
            last_contact_s=d.health.last_ok_at,
            reader_online=d.reader_health.online,
            lag_ms=d.lag.summary_ms(),
            lag=d.lag.stats,
        )
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ScrapeCollector(self.counts, live, figures))
        return generate_latest(registry)
