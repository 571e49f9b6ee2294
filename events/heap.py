"""Interpreter settings of the long-running processes (the consumer, the rebuild, the API): the garbage
collector, and how soon a thread waiting for the interpreter lock gets it."""

import gc
import sys

# Every batch allocates tens of thousands of short-lived objects (records, events, writes, replies) that
# reference counting frees on its own. With the default threshold (700 allocations) the collector ran
# dozens of times per batch and, every tenth run, walked everything start-up built as well (kafka-python,
# pydantic's schemas): a tenth to a fifth of decoding's time. Cyclic garbage now waits for at most this
# many allocations, a few megabytes.
BATCH_GC_THRESHOLD = 50_000


# A full collection walks every object the process holds. In the API with 10,000 streams open that is
# millions of objects, and one collection held the event loop for up to 1.9 s, each a stall of every stream
# (the fan-out's delivery p99 was these pauses). The API asks for one at most every 4 million allocations
# (API_FULL_COLLECTION_EVERY middle collections, each API_MIDDLE_COLLECTION_EVERY young ones of
# API_YOUNG_COLLECTION_EVERY allocations; 100 million in the bench's desktops, whose young threshold is the
# consumer's; 20 million in the consumer, with `settle_heap`'s defaults); Python also waits
# until the objects that survived have grown by a quarter since the last one. Every 100 million
# allocations gave quick fan-out runs a delivery p99 of 189 and 659 ms, against 48 to 95 ms with 4 million.
API_FULL_COLLECTION_EVERY = 10

# A middle collection walks what survived the young ones since the last. With 10,000 streams open that is
# their waiting state, which every heartbeat (10 s) sets up afresh: a future, a coroutine and timers per
# stream, 150,000 objects or more. Every 20 young collections (`settle_heap`'s default), one came every 12 to
# 15 s and held the event loop for 100 to 300 ms: two or three fell in each 30 s window of the fan-out
# figure, and made its delivery p99. Every 200 (one every two minutes or so once the streams are open),
# none fell in the window: p99 46.96, 105.76 and 32.56 ms against 114.43, 112.80 and 179.76 ms, in
# three pairs taken in turn, with the API's CPU unchanged (`citizen-context bench --only fanout`, with a
# `gc.callbacks` timer in every process). Each one is no shorter: it walks what the streams hold.
API_MIDDLE_COLLECTION_EVERY = 200

# The API's young collections come far sooner than the consumer's: a young collection walks everything
# allocated since the last one, and with 10,000 streams open each walk of 50,000 objects held the event
# loop for 40 to 330 ms of CPU (a `gc.callbacks` timer during quick fan-out runs); every change arriving
# meanwhile waited, and those waits were the fan-out's delivery p99 (164 to 276 ms). Every 2,000
# allocations, the same quick run gave a p99 of 48 and 67 ms, against 196 ms between them, and the
# context read's quick runs did not move beyond the noise (0.483 and 0.418 of `/healthz`, against 0.454
# and 0.472).
API_YOUNG_COLLECTION_EVERY = 2_000


def settle_heap(
    *, full_collection_every: int = 20, young_every: int = BATCH_GC_THRESHOLD, middle_every: int = 20
) -> None:
    """Once set up: leave start-up's objects out of every later collection, and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_every, middle_every, full_collection_every)


# Python hands the interpreter lock to a waiting thread only after the running one has held it this long
# (5 ms by default). The API's audit and access-check threads, and the consumer's kafka-python network
# thread (and, when this was measured, its writer thread), wait for it while the main thread decodes or
# serves; each wait was added to a change's way to the desktop. Measured
# with `citizen-context bench --quick --only freshness`, three pairs back to back: p99 80, 51 and 80 ms
# before against 50, 50 and 47 ms with 0.5 ms, and the p50 about a millisecond lower.
PROMPT_SWITCH_INTERVAL_S = 0.0005


def prefer_prompt_switches() -> None:
    """Let a thread waiting for the interpreter lock have it sooner (latency over a little throughput)."""
    sys.setswitchinterval(PROMPT_SWITCH_INTERVAL_S)
