"""Percentile summaries of benchmark samples, rounded for a JSON report."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q ≤ 100) of ``samples``."""
    if not samples:
        raise ValueError("no samples to summarise; the measurement produced none")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(samples: Sequence[float], *, with_max: bool = False) -> dict[str, float]:
    """p50 and p99 (and max) of samples in milliseconds, to 0.01 ms."""
    out = {"p50": round(percentile(samples, 50), 2), "p99": round(percentile(samples, 99), 2)}
    if with_max:
        out["max"] = round(max(samples), 2)
    return out
