"""Figure 1, ingest: one consumer process applying a pre-produced topic, against a bare poll loop."""

import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import workers
from bench.cpu import CpuShares, CpuWindow, figure_processes
from bench.produce import produce_topic
from bench.results import Ingest
from bench.stack import FigureStack
from bench.stats import rate, ratio
from bench.workload import Workload
from events.consumer import create_consumer
from events.settings import KafkaSettings

CITIZENS = 10_000
# The bare poll loop reads the topic this many times, each as a new group, and its median is the ceiling:
# back to back on an idle machine, single passes over the same 200,000 records ranged from 83,000 to
# 141,000 records/s, which made a ratio to any one of them mostly the ceiling's own noise.
POLL_PASSES = 3
COUNTERS = re.compile(r"^citizen_context_events_(?:applied|unchanged)_total (\S+)$", re.MULTILINE)


def raw_poll(kafka: KafkaSettings, expected: int) -> float:
    """Events/s of a bare kafka-python poll loop (the consumer's own settings) reading `expected` records."""
    consumer = create_consumer(kafka)
    seen = first_count = 0
    first_at = last_at = 0.0
    deadline = time.monotonic() + 600
    try:
        while seen < expected and time.monotonic() < deadline:
            count = sum(len(batch) for batch in consumer.poll(timeout_ms=kafka.poll_timeout_ms).values())
            if not count:
                continue
            seen += count
            last_at = time.perf_counter()
            if not first_at:
                # From the first batch on, as for the consumer: joining the group is not reading.
                first_count, first_at = seen, last_at
    finally:
        consumer.close(autocommit=False)
    return rate(seen - first_count, last_at - first_at)


# The counters are read this often. A new connection per read, every 20 ms, cost the bench process
# 30 to 50 % of a core, taken from the two the consumer, Kafka and Redis share.
READ_EVERY_S = 0.05


def _processed(client: httpx.Client, url: str) -> int:
    return int(sum(float(value) for value in COUNTERS.findall(client.get(url, timeout=5).text)))


def consumer_rate(stack: FigureStack, expected: int) -> tuple[float, int, CpuShares]:
    """Events/s that a `citizen-context consume` process applies to Redis from the topic, how many events
    that was timed over, and where the CPU went meanwhile."""
    metrics = f"http://127.0.0.1:{stack.health_port}/metrics"
    stack.consumer()
    first_count, first_at = 0, 0.0
    window: CpuWindow | None = None
    deadline = time.monotonic() + 900
    with httpx.Client() as client:  # one kept-alive connection
        while time.monotonic() < deadline:
            count = _processed(client, metrics)
            now = time.perf_counter()
            if count and not first_at:
                first_count, first_at = count, now
                window = CpuWindow(figure_processes(stack))
            if count >= expected and window is not None:
                timed = count - first_count
                return rate(timed, now - first_at), timed, window.end()
            time.sleep(READ_EVERY_S)
        applied = _processed(client, metrics)
    raise RuntimeError(f"the consumer applied only {applied} of {expected} events in time")


def poll_ceiling(passes: Sequence[float]) -> float:
    """The ingest figure's ceiling: the median of the bare poll loop's passes (pure)."""
    return statistics.median(passes)


@dataclass(frozen=True)
class Measured:
    """The figure, its bare poll loop's passes (their median is the figure's ceiling), where the CPU went
    while the consumer was timed, and the stack, whose topic and projection the rebuild figure replays."""

    figure: Ingest
    poll_passes: tuple[float, ...]
    # The events the consumer applied while it was timed (from its first batch on), and the CPU meanwhile.
    timed_events: int
    cpu: CpuShares
    stack: FigureStack

    def describe(self) -> str:
        """The report's note: the poll loop's passes, then the CPU while the consumer was timed (per event
        too)."""
        passes = ", ".join(f"{per_s:,.0f}" for per_s in self.poll_passes)
        return (
            f"bare poll loop passes {passes} records/s (median taken); "
            f"{self.cpu.describe(events=self.timed_events)}"
        )


def measure(work_dir: Path, *, count: int) -> Measured:
    """Fill a topic with `count` events, read it with the bare poll loop, then apply it with the consumer."""
    stack = FigureStack.create("ingest", work_dir)
    kafka = stack.kafka
    try:
        workload = Workload(citizens=CITIZENS)
        workers.run(produce_topic, kafka.bootstrap_list, kafka.topic, workload, count, timeout_s=900)
        passes: tuple[float, ...] = tuple(
            workers.run(
                raw_poll,
                kafka.model_copy(update={"group_id": f"{kafka.group_id}-raw-{n}"}),
                count,
                timeout_s=900,
            )
            for n in range(POLL_PASSES)
        )
        applied, timed, cpu = consumer_rate(stack, count)
        stack.close(keep_data=True)  # the consumer stopped; the topic and projection stay for the rebuild
    except BaseException:
        stack.close()  # its consumer stopped, its data deleted: nothing is left for a rebuild to replay
        raise
    raw = poll_ceiling(passes)
    figure = Ingest(events=count, events_per_s=applied, raw_poll_events_per_s=raw, ratio=ratio(applied, raw))
    return Measured(figure=figure, poll_passes=passes, timed_events=timed, cpu=cpu, stack=stack)
