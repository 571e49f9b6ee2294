"""The ingest figure's ceiling and note: the poll loop's passes, and the CPU while the consumer was timed
(pure)."""

from pathlib import Path

from bench.cpu import CpuShares
from bench.ingest import Measured, poll_ceiling
from bench.results import Ingest
from bench.stack import FigureStack


def test_the_note_lists_the_poll_loop_s_passes_then_the_cpu_per_event_of_the_timed_events(
    tmp_path: Path,
) -> None:
    measured = Measured(
        figure=Ingest(events=200_000, events_per_s=20_000, raw_poll_events_per_s=100_000, ratio=0.2),
        poll_passes=(84_868.4, 107_867.0, 137_873.0),
        # The consumer's first batch is not timed: 190,000 of the 200,000 events, over 9.5 s.
        timed_events=190_000,
        cpu=CpuShares(processes={"consumer": 0.8, "redis": 0.6}, machine_busy=1.5, cores=2, seconds=9.5),
        stack=FigureStack(name="ingest", work_dir=tmp_path),
    )
    assert measured.describe() == (
        "bare poll loop passes 84,868, 107,867, 137,873 records/s (median taken); CPU over the timed 10 s, "
        "in cores: consumer 0.80, redis 0.60; the machine 1.50 of 2 busy; per event: consumer 40.0 us, "
        "redis 30.0 us"
    )


def test_the_ceiling_is_the_median_pass_whatever_their_order() -> None:
    assert poll_ceiling([137_873.0, 84_868.0, 107_867.0]) == 107_867.0
    assert poll_ceiling([84_868.0, 107_867.0, 137_873.0]) == 107_867.0
    # Not the mean (110,203) nor the best: one fast or slow pass moves it not at all.
    assert poll_ceiling([107_867.0, 107_000.0, 500_000.0]) == 107_867.0
