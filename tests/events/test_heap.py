"""The long-running processes' garbage collector settings."""

import gc
import sys

import pytest

from events.heap import (
    API_FULL_COLLECTION_EVERY,
    API_MIDDLE_COLLECTION_EVERY,
    API_YOUNG_COLLECTION_EVERY,
    BATCH_GC_THRESHOLD,
    PROMPT_SWITCH_INTERVAL_S,
    prefer_prompt_switches,
    settle_heap,
)


@pytest.mark.parametrize(
    ("young_every", "middle_every", "full_every"),
    [
        (BATCH_GC_THRESHOLD, 20, 20),
        (API_YOUNG_COLLECTION_EVERY, API_MIDDLE_COLLECTION_EVERY, API_FULL_COLLECTION_EVERY),
    ],
)
def test_settling_the_heap_freezes_what_exists_and_collects_less_often(
    young_every: int, middle_every: int, full_every: int
) -> None:
    before = gc.get_threshold()
    try:
        settle_heap(full_collection_every=full_every, young_every=young_every, middle_every=middle_every)
        assert gc.get_threshold() == (young_every, middle_every, full_every)
        # Never more often than Python's default, at any generation.
        assert gc.get_threshold()[0] > before[0]
        assert young_every * middle_every >= before[0] * before[1]
        assert young_every * middle_every * full_every >= before[0] * before[1] * before[2]
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_waiting_threads_get_the_interpreter_lock_sooner() -> None:
    before = sys.getswitchinterval()
    try:
        prefer_prompt_switches()
        assert sys.getswitchinterval() == pytest.approx(PROMPT_SWITCH_INTERVAL_S)
        assert sys.getswitchinterval() < before
    finally:
        sys.setswitchinterval(before)
