"""Figure 5, memory: Redis bytes per stored event against the size of the event's JSON."""

from pathlib import Path

import redis

from bench import workers
from bench.results import Memory
from bench.seed import seed
from bench.stack import FigureStack
from bench.stats import ratio


def stored_bytes(client: "redis.Redis", prefix: str) -> int:
    """What Redis reports for every key under `prefix` (MEMORY USAGE, all samples: exact for hashes)."""
    total = 0
    keys = list(client.scan_iter(match=f"{prefix}:*", count=5000))
    for start in range(0, len(keys), 1000):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + 1000]:
            pipe.memory_usage(key, samples=0)
        total += sum(size or 0 for size in pipe.execute())
    return total


def measure(work_dir: Path, *, citizens: int, per: int) -> Memory:
    """Write `per` events for each of `citizens` citizens, then weigh what Redis holds for them."""
    stack = FigureStack.create("memory", work_dir, partitions=1)
    try:
        prefix = stack.redis.key_prefix
        events, json_bytes = workers.run(seed, prefix, citizens, per, timeout_s=1800)
        client = redis.Redis.from_url(str(stack.redis.url))
        try:
            stored = stored_bytes(client, prefix)
        finally:
            client.close()
        per_event, json_per_event = stored / events, json_bytes / events
        return Memory(
            bytes_per_event=round(per_event, 1),
            json_bytes_per_event=round(json_per_event, 1),
            ratio=ratio(per_event, json_per_event),
        )
    finally:
        stack.close()
