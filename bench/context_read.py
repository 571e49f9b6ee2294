"""Figure 3, context read: GET a 100-event context at a steady rate, and at capacity against /healthz."""

import asyncio
from pathlib import Path

import structlog

from bench import access, workers
from bench.httpload import Measured, closed_loop, open_loop
from bench.results import ContextRead
from bench.seed import seed
from bench.stack import FigureStack
from bench.stats import rate, ratio, summarise_ms
from bench.workload import citizen_id

log = structlog.get_logger("bench")

CITIZENS = 200
EVENTS_EACH = 100
CONCURRENCY = 64


def _check(measured: Measured, what: str) -> None:
    """Fail on no answers at all; say so (the figure still counts them) on errors or non-200 answers."""
    bad = {status: n for status, n in measured.statuses.items() if status != 200}
    if not measured.completed:
        raise RuntimeError(f"{what}: no request completed ({measured.errors} errors)")
    if measured.errors or bad:
        log.warning("not every request succeeded", load=what, errors=measured.errors, statuses=bad)


def measure(
    work_dir: Path, *, rate_per_s: float, open_s: float, closed_s: float
) -> tuple[ContextRead, list[float]]:
    """The figure, and the open-loop latencies (seconds) for the plot."""
    stack = FigureStack.create("context_read", work_dir, partitions=1)
    try:
        workers.run(seed, stack.redis.key_prefix, CITIZENS, EVENTS_EACH, timeout_s=900)
        stack.api()
        citizens = [citizen_id(n) for n in range(1, CITIZENS + 1)]
        grants = asyncio.run(access.grant_access(stack.api_url, access.agents(2), citizens))
        # One agent's view: the paths of the citizens it holds enquiries for.
        agent = grants[0].agent
        paths = [f"/v1/citizens/{g.citizen_id}/context" for g in grants if g.agent == agent]
        host, port, headers = "127.0.0.1", stack.api_port, agent.headers()
        steady = workers.run(
            open_loop, host, port, paths, headers, rate_per_s, open_s, timeout_s=open_s + 120
        )
        _check(steady, "open loop")
        busy = workers.run(
            closed_loop, host, port, paths, headers, CONCURRENCY, closed_s, timeout_s=closed_s + 60
        )
        _check(busy, "closed loop")
        trivial = workers.run(
            closed_loop, host, port, ["/healthz"], headers, CONCURRENCY, closed_s, timeout_s=closed_s + 60
        )
        _check(trivial, "closed loop (trivial endpoint)")
        latency = summarise_ms(steady.latencies)
        rps, baseline = rate(busy.completed, busy.seconds), rate(trivial.completed, trivial.seconds)
        figure = ContextRead(
            rate_per_s=rate_per_s,
            p50_ms=latency.p50_ms,
            p99_ms=latency.p99_ms,
            concurrency=CONCURRENCY,
            rps=rps,
            baseline_rps=baseline,
            ratio=ratio(rps, baseline),
        )
        return figure, steady.latencies
    finally:
        stack.close()
