"""The batch processes' garbage collector settings."""

import gc

from events.heap import BATCH_GC_THRESHOLD, settle_heap


def test_settling_the_heap_freezes_what_exists_and_collects_less_often() -> None:
    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_threshold()[0] == BATCH_GC_THRESHOLD
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
