"""Prometheus metrics of the consumer process."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPLIED = Counter("citizen_context_events_applied_total", "Events that changed a citizen's context.")
EVENTS_UNCHANGED = Counter(
    "citizen_context_events_unchanged_total",
    "Valid events that changed nothing (duplicates, or older than the timeline keeps).",
)
EVENTS_DEAD_LETTERED = Counter(
    "citizen_context_events_dead_lettered_total", "Records sent to the dead-letter topic.", ["reason"]
)
BATCH_SECONDS = Histogram(
    "citizen_context_batch_seconds",
    "Time from a batch's poll to its commit.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "citizen_context_consumer_lag", "Records in the partition not yet consumed.", ["topic", "partition"]
)
REDIS_RETRIES = Counter(
    "citizen_context_redis_retries_total", "Batch attempts that failed because Redis was unavailable."
)
