"""Figure 2, freshness: from the producer's send to the agent's WebSocket, with streams open."""

import random
from pathlib import Path

from bench import access
from bench.live import LiveRun, live_run
from bench.results import Freshness
from bench.stack import FigureStack
from bench.stats import summarise_ms

# Freshness is timed after this long at its rate, uncounted (the events of the warm-up carry ids without a
# send time): every process of the path has just started, and a just-started broker acknowledges far more
# slowly for its first seconds than once warm, as a production broker long has been (README, Benchmarks).
WARM_UP_S = 20.0


def measure(
    work_dir: Path,
    *,
    citizens: int,
    streams: int,
    rate_per_s: float,
    duration_s: float,
    warm_up_s: float = WARM_UP_S,
) -> tuple[Freshness, list[float], LiveRun]:
    """The figure, its latencies (seconds) for the plot, and the live run (what the streams saw, the CPU)."""
    stack = FigureStack.create("freshness", work_dir)
    try:
        stack.consumer()
        stack.api()
        rng = random.Random(3)  # noqa: S311 (test data, not crypto)
        population = list(range(1, citizens + 1))
        watched = rng.sample(population, streams)
        live = live_run(
            stack,
            watched=watched,
            targets=population,
            rate_per_s=rate_per_s,
            duration_s=duration_s,
            agents=access.agents_for(streams),
            warm_up_s=warm_up_s,
        )
        latency = summarise_ms(live.seen.latencies)
        figure = Freshness(
            rate_per_s=rate_per_s, streams=live.seen.opened, p50_ms=latency.p50_ms, p99_ms=latency.p99_ms
        )
        return figure, live.seen.latencies, live
    finally:
        stack.close()
