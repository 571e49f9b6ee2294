"""Latency and throughput arithmetic (pure): percentiles, summaries and ratios."""

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's default).

    Raises ValueError for no values: a figure without samples must fail loudly, never read as 0 ms.
    """
    if not values:
        raise ValueError("no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not between 0 and 100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class LatencySummary:
    """The percentiles the report quotes, in milliseconds."""

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def summarise_ms(seconds: Sequence[float]) -> LatencySummary:
    """Percentiles of latencies given in seconds, in milliseconds, rounded to 0.01 ms."""
    return LatencySummary(
        count=len(seconds),
        p50_ms=round(percentile(seconds, 50) * 1000, 2),
        p90_ms=round(percentile(seconds, 90) * 1000, 2),
        p99_ms=round(percentile(seconds, 99) * 1000, 2),
        max_ms=round(max(seconds) * 1000, 2),
    )


def ratio(measured: float, ceiling: float) -> float:
    """measured / ceiling, rounded to 3 places (0 when the ceiling is 0: nothing to compare against)."""
    return round(measured / ceiling, 3) if ceiling > 0 else 0.0


def rate(count: int, seconds: float) -> float:
    """Events (or requests) per second, rounded to a whole number."""
    return round(count / seconds) if seconds > 0 else 0.0


def slope(values: Sequence[float]) -> float:
    """The least-squares slope of values taken at equal steps (change per step); at least two values."""
    if len(values) < 2:
        raise ValueError("a slope needs at least two values")
    mean_x, mean_y = (len(values) - 1) / 2, sum(values) / len(values)
    spread = sum((x - mean_x) ** 2 for x in range(len(values)))
    return sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values)) / spread
