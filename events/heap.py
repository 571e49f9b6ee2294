"""The garbage collector's settings for the long-running processes (the consumer, the rebuild, the API)."""

import gc

# Every batch allocates tens of thousands of short-lived objects (records, events, writes, replies) that
# reference counting frees on its own. With the default threshold (700 allocations) the collector ran
# dozens of times per batch and, every tenth run, walked everything start-up built as well (kafka-python,
# pydantic's schemas): a tenth to a fifth of decoding's time. Cyclic garbage now waits for at most this
# many allocations, a few megabytes.
BATCH_GC_THRESHOLD = 50_000


# A full collection walks every object the process holds. In the API with 10,000 streams open that is
# millions of objects, and one collection held the event loop for up to 1.9 s, each a stall of every stream
# (the fan-out's delivery p99 was these pauses). The API asks for one at most every this many collections
# of the middle generation (with the threshold above: every 100 million allocations, minutes under load);
# Python also waits until the objects that survived have grown by a quarter since the last one.
API_FULL_COLLECTION_EVERY = 100


def settle_heap(*, full_collection_every: int = 20) -> None:
    """Once set up: leave start-up's objects out of every later collection, and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(BATCH_GC_THRESHOLD, 20, full_collection_every)
