"""Figure 4, fan-out: many streams on one API process, its memory, and delivery while changes land."""

import random
from pathlib import Path

from bench import access
from bench.live import LiveRun, live_run
from bench.results import Fanout
from bench.stack import FigureStack
from bench.stats import summarise_ms

# Changes per second, every one on a watched citizen.
RATE_PER_S = 200.0


def measure(
    work_dir: Path, *, connections: int, rate_per_s: float, duration_s: float
) -> tuple[Fanout, list[float], LiveRun]:
    """The figure, its delivery latencies (seconds) for the plot, and the live run (what the streams saw,
    the CPU).

    Each stream watches a citizen of its own (one agent, one enquiry); every change lands on a watched
    citizen, so each is delivered to exactly one stream. Delivery is timed from the producer's send.
    """
    stack = FigureStack.create("fanout", work_dir)
    try:
        stack.consumer()
        stack.api()
        watched = list(range(1, connections + 1))
        random.Random(4).shuffle(watched)  # noqa: S311 (test data, not crypto)
        live = live_run(
            stack,
            watched=watched,
            targets=watched,
            rate_per_s=rate_per_s,
            duration_s=duration_s,
            agents=access.agents_for(connections),
            sample_rss=True,
        )
        latency = summarise_ms(live.seen.latencies)
        figure = Fanout(
            connections=live.seen.opened,
            rss_mb=live.peak_rss_mb,
            rate_per_s=rate_per_s,
            p99_ms=latency.p99_ms,
        )
        return figure, live.seen.latencies, live
    finally:
        stack.close()
