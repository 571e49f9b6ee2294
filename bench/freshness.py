"""Figure 2, freshness: from the producer's send to the agent's WebSocket, with streams open."""

import asyncio
import random
import time
from pathlib import Path

from bench import access, workers
from bench.produce import produce_paced
from bench.results import Freshness
from bench.stack import FigureStack, rss_mb
from bench.stats import summarise_ms
from bench.streams import Watched, watch
from bench.workload import citizen_id

# Every stream's last changes arrive within this long after the producer's last send, or never.
TAIL_S = 3.0
# Freshness is timed after this long at its rate, uncounted (the events of the warm-up carry ids without a
# send time): every process of the path has just started, and a just-started broker acknowledges far more
# slowly for its first seconds than once warm, as a production broker long has been (README, Benchmarks).
WARM_UP_S = 20.0


def live_run(
    stack: FigureStack,
    *,
    watched: list[int],
    targets: list[int],
    rate_per_s: float,
    duration_s: float,
    agents: int,
    sample_rss: bool = False,
    warm_up_s: float = 0.0,
) -> tuple[Watched, float]:
    """Stream each watched citizen, send events to `targets` at a rate (untimed for `warm_up_s`, then
    timed for `duration_s`); what arrived, the API's peak RSS."""
    grants = asyncio.run(
        access.grant_access(stack.api_url, access.agents(agents), [citizen_id(n) for n in watched])
    )
    api = next(child for child in stack.children if child.name == "api")
    ready, stop = workers.new_event(), workers.new_event()
    receiver = workers.Worker(watch, stack.api_url, grants, ready, stop)
    try:
        if not ready.wait(timeout=900):
            raise RuntimeError("the streams did not all open within 15 minutes")
        peak = rss_mb(api.pid)
        kafka = stack.kafka
        producer = workers.Worker(
            produce_paced, kafka.bootstrap_list, kafka.topic, targets, rate_per_s, duration_s, 5, warm_up_s
        )
        try:
            while producer.running():
                if sample_rss:
                    peak = max(peak, rss_mb(api.pid))
                time.sleep(0.5)
            producer.result(timeout_s=60)
        finally:
            producer.stop()
        time.sleep(TAIL_S)
        peak = max(peak, rss_mb(api.pid))
        stop.set()
        seen: Watched = receiver.result(timeout_s=300)
    finally:
        stop.set()
        receiver.stop()
    return seen, peak


def measure(
    work_dir: Path,
    *,
    citizens: int,
    streams: int,
    rate_per_s: float,
    duration_s: float,
    warm_up_s: float = WARM_UP_S,
) -> tuple[Freshness, list[float], Watched]:
    """The figure, its latencies (seconds) for the plot, and what the streams saw."""
    stack = FigureStack.create("freshness", work_dir)
    try:
        stack.consumer()
        stack.api()
        rng = random.Random(3)  # noqa: S311 (test data, not crypto)
        population = list(range(1, citizens + 1))
        watched = rng.sample(population, streams)
        seen, _rss = live_run(
            stack,
            watched=watched,
            targets=population,
            rate_per_s=rate_per_s,
            duration_s=duration_s,
            agents=access.agents_for(streams),
            warm_up_s=warm_up_s,
        )
        latency = summarise_ms(seen.latencies)
        figure = Freshness(
            rate_per_s=rate_per_s, streams=seen.opened, p50_ms=latency.p50_ms, p99_ms=latency.p99_ms
        )
        return figure, seen.latencies, seen
    finally:
        stack.close()
