"""The garbage collector's settings for the batch processes (the consumer and the rebuild)."""

import gc

# Every batch allocates tens of thousands of short-lived objects (records, events, writes, replies) that
# reference counting frees on its own. With the default threshold (700 allocations) the collector ran
# dozens of times per batch and, every tenth run, walked everything start-up built as well (kafka-python,
# pydantic's schemas): a tenth to a fifth of decoding's time. Cyclic garbage now waits for at most this
# many allocations, a few megabytes.
BATCH_GC_THRESHOLD = 50_000


def settle_heap() -> None:
    """Once set up: leave start-up's objects out of every later collection, and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(BATCH_GC_THRESHOLD, 20, 20)
