"""Figure 4, fan-out: many streams on one API process, its memory, and delivery while changes land."""

import random
from pathlib import Path

from bench import access
from bench.live import live_run
from bench.results import Fanout
from bench.stack import FigureStack
from bench.stats import summarise_ms
from bench.streams import Watched

# Changes per second, every one on a watched citizen.
RATE_PER_S = 200.0


def measure(
    work_dir: Path, *, connections: int, rate_per_s: float, duration_s: float
) -> tuple[Fanout, list[float], Watched]:
    """The figure, its delivery latencies (seconds) for the plot, and what the streams saw.

    Each stream watches a citizen of its own (one agent, one enquiry); every change lands on a watched
    citizen, so each is delivered to exactly one stream. Delivery is timed from the producer's send.
    """
    stack = FigureStack.create("fanout", work_dir)
    try:
        stack.consumer()
        stack.api()
        watched = list(range(1, connections + 1))
        random.Random(4).shuffle(watched)  # noqa: S311 (test data, not crypto)
        seen, peak_rss = live_run(
            stack,
            watched=watched,
            targets=watched,
            rate_per_s=rate_per_s,
            duration_s=duration_s,
            agents=access.agents_for(connections),
            sample_rss=True,
        )
        latency = summarise_ms(seen.latencies)
        figure = Fanout(
            connections=seen.opened, rss_mb=peak_rss, rate_per_s=rate_per_s, p99_ms=latency.p99_ms
        )
        return figure, seen.latencies, seen
    finally:
        stack.close()
