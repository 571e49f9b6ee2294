"""A live run, shared by the freshness and fan-out figures and the soak: agents' desktops stream their
citizens (in a process of their own) while a producer sends events at a steady rate."""

import asyncio
import time
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import access, workers
from bench.cpu import CpuShares, CpuWindow, figure_processes
from bench.produce import produce_paced
from bench.stack import FigureStack, rss_mb
from bench.streams import Watched, watch
from bench.workload import citizen_id

# Every stream's last changes arrive within this long after the producer's last send, or never.
TAIL_S = 3.0
# How long closing takes at most: the desktops waiting to see the API close every stream of a completed
# enquiry, and the API counting every stream closed once they are.
CLOSE_TIMEOUT_S = 30.0
STREAMS_OPEN_METRIC = "citizen_context_api_streams_open"
# The producer's process starts and connects within this long; once its sends are due, it has this long
# more to have all of them acknowledged. Past both, the run fails rather than waiting on.
PRODUCER_START_S = 120.0
PRODUCER_FLUSH_S = 90.0


@dataclass(frozen=True)
class LiveRun:
    """What a live run saw: the desktops' deliveries, the API's peak resident memory, and where the CPU
    went while the producer's sends were timed (after its warm-up)."""

    seen: Watched
    peak_rss_mb: float
    cpu: CpuShares


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
    complete_enquiries: bool = False,
) -> LiveRun:
    """Stream each watched citizen, send events to `targets` at a rate (untimed for `warm_up_s`, then
    timed for `duration_s`); what arrived, the API's peak RSS, the CPU while timed.

    With `complete_enquiries`, the agents then complete every enquiry, as each call ends, and the run
    waits (up to CLOSE_TIMEOUT_S) for the desktops to see the API close every stream before they close the
    rest themselves.
    """
    grants = asyncio.run(
        access.grant_access(stack.api_url, access.agents(agents), [citizen_id(n) for n in watched])
    )
    api = next(child for child in stack.children if child.name == "api")
    ready, stop, all_closed = workers.new_event(), workers.new_event(), workers.new_event()
    receiver = workers.Worker(watch, stack.api_url, grants, ready, stop, all_closed)
    try:
        if not ready.wait(timeout=900):
            raise RuntimeError("the streams did not all open within 15 minutes")
        peak = rss_mb(api.pid)
        kafka = stack.kafka
        # Set by the producer as its first paced send goes (once its first, untimed event is acknowledged).
        sending = workers.new_event()
        producer = workers.Worker(
            produce_paced,
            kafka.bootstrap_list,
            kafka.topic,
            targets,
            rate_per_s,
            duration_s,
            5,
            warm_up_s,
            sending,
        )
        deadline = time.monotonic() + PRODUCER_START_S + warm_up_s + duration_s + PRODUCER_FLUSH_S
        timed_from: float | None = None
        window: CpuWindow | None = None
        try:
            while producer.running():
                now = time.monotonic()
                if now > deadline:
                    raise RuntimeError("the producer did not finish its sends in time")
                if sample_rss:
                    peak = max(peak, rss_mb(api.pid))
                if timed_from is None and sending.is_set():
                    timed_from = now + warm_up_s  # the CPU window opens with the timed sends
                if window is None and timed_from is not None and now >= timed_from:
                    window = CpuWindow(figure_processes(stack, producer=producer.pid, desktops=receiver.pid))
                elif window is not None:
                    window.sample()
                time.sleep(0.5 if window is not None else 0.05)
            cpu = (window or CpuWindow({})).end()
            producer.result(timeout_s=60)
        finally:
            producer.stop()
        time.sleep(TAIL_S)
        peak = max(peak, rss_mb(api.pid))
        if complete_enquiries:
            asyncio.run(access.complete_enquiries(stack.api_url, grants))
            # The desktops count each stream the API closes; those still open at the timeout are not.
            all_closed.wait(timeout=CLOSE_TIMEOUT_S)
            peak = max(peak, rss_mb(api.pid))
        stop.set()
        seen: Watched = receiver.result(timeout_s=300)
    finally:
        stop.set()
        receiver.stop()
    return LiveRun(seen=seen, peak_rss_mb=peak, cpu=cpu)


def streams_open(metrics: str) -> int:
    """The API's count of open streams, from its Prometheus exposition."""
    for family in text_string_to_metric_families(metrics):
        if family.name == STREAMS_OPEN_METRIC:
            return int(sum(sample.value for sample in family.samples))
    raise ValueError(f"the API's metrics have no {STREAMS_OPEN_METRIC}")


def wait_streams_closed(api_url: str) -> int:
    """Wait until the API counts no stream open, for up to CLOSE_TIMEOUT_S; how many it still counts."""
    deadline = time.monotonic() + CLOSE_TIMEOUT_S
    while True:
        left = streams_open(httpx.get(f"{api_url}/metrics", timeout=10).text)
        if left == 0 or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)
