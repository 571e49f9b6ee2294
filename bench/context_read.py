"""Figure 3, context read: GET a 100-event context at a steady rate, and at capacity against /healthz."""

import asyncio
from dataclasses import dataclass
from pathlib import Path

import structlog

from bench import access, workers
from bench.httpload import Measured, closed_loop, open_loop
from bench.results import ContextRead
from bench.seed import seed
from bench.stack import FigureStack, cpu_seconds
from bench.stats import rate, ratio, summarise_ms
from bench.workload import citizen_id

log = structlog.get_logger("bench")

CITIZENS = 200
EVENTS_EACH = 100
CONCURRENCY = 64
# The open loop runs this long at its rate before it counts: the API has just started, its connections to
# Redis and the database open and its caches fill during the first seconds (the closed loops warm up too).
OPEN_WARM_UP_S = 5.0


def _check(measured: Measured, what: str) -> None:
    """Fail on no answers at all; say so (the figure still counts them) on errors or non-200 answers."""
    bad = {status: n for status, n in measured.statuses.items() if status != 200}
    if not measured.completed:
        raise RuntimeError(f"{what}: no request completed ({measured.errors} errors)")
    if measured.errors or bad:
        log.warning("not every request succeeded", load=what, errors=measured.errors, statuses=bad)


@dataclass(frozen=True)
class CpuPerRequest:
    """The API process's CPU time per request in the closed loops: the context read and the trivial one."""

    context_us: float
    baseline_us: float

    @property
    def ratio(self) -> float:
        """The trivial endpoint's CPU per request over the context read's (as the capacity ratio)."""
        return ratio(self.baseline_us, self.context_us)


def measure(
    work_dir: Path, *, rate_per_s: float, open_s: float, closed_s: float
) -> tuple[ContextRead, list[float], CpuPerRequest]:
    """The figure, the open-loop latencies (seconds) for the plot, and the API's CPU per request."""
    stack = FigureStack.create("context_read", work_dir, partitions=1)
    try:
        workers.run(seed, stack.redis.key_prefix, CITIZENS, EVENTS_EACH, timeout_s=900)
        api = stack.api()
        citizens = [citizen_id(n) for n in range(1, CITIZENS + 1)]
        grants = asyncio.run(access.grant_access(stack.api_url, access.agents(2), citizens))
        # One agent's view: the paths of the citizens it holds enquiries for.
        agent = grants[0].agent
        paths = [f"/v1/citizens/{g.citizen_id}/context" for g in grants if g.agent == agent]
        host, port, headers = "127.0.0.1", stack.api_port, agent.headers()
        steady = workers.run(
            open_loop,
            host,
            port,
            paths,
            headers,
            rate_per_s,
            open_s,
            OPEN_WARM_UP_S,
            timeout_s=OPEN_WARM_UP_S + open_s + 120,
        )
        _check(steady, "open loop")
        used = cpu_seconds(api.pid)
        busy = workers.run(
            closed_loop, host, port, paths, headers, CONCURRENCY, closed_s, timeout_s=closed_s + 60
        )
        _check(busy, "closed loop")
        busy_cpu = cpu_seconds(api.pid) - used
        used += busy_cpu
        trivial = workers.run(
            closed_loop, host, port, ["/healthz"], headers, CONCURRENCY, closed_s, timeout_s=closed_s + 60
        )
        _check(trivial, "closed loop (trivial endpoint)")
        trivial_cpu = cpu_seconds(api.pid) - used
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
        cpu = CpuPerRequest(
            context_us=round(busy_cpu / busy.completed * 1e6, 1),
            baseline_us=round(trivial_cpu / trivial.completed * 1e6, 1),
        )
        return figure, steady.latencies, cpu
    finally:
        stack.close()
