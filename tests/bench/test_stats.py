"""The bench's arithmetic: percentiles, summaries, ratios and rates."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.stats import percentile, rate, ratio, slope, summarise_ms


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 99) == pytest.approx(3.97)


def test_percentile_of_one_sample_is_that_sample() -> None:
    assert percentile([7.0], 1) == percentile([7.0], 99) == 7.0


def test_percentile_refuses_no_samples_and_bad_ranks() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1), st.floats(0, 100), st.floats(0, 100))
def test_percentile_is_monotonic_and_within_the_samples(values: list[float], a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert min(values) <= percentile(values, low) <= percentile(values, high) <= max(values)


def test_summary_is_in_milliseconds() -> None:
    summary = summarise_ms([0.001, 0.002, 0.003, 0.004, 0.100])
    assert (summary.count, summary.p50_ms, summary.max_ms) == (5, 3.0, 100.0)
    assert summary.p50_ms <= summary.p90_ms <= summary.p99_ms <= summary.max_ms


def test_ratio_and_rate_guard_against_zero() -> None:
    assert ratio(1, 4) == 0.25
    assert ratio(1, 0) == 0.0
    assert rate(1000, 2.0) == 500
    assert rate(10, 0) == 0.0


def test_slope_is_the_change_per_step() -> None:
    assert slope([1.0, 3.0, 5.0, 7.0]) == pytest.approx(2.0)
    assert slope([5.0, 5.0, 5.0]) == pytest.approx(0.0)
    # Least squares: a sawtooth around a flat line is nearly flat (2/21: it ends on a high value).
    assert slope([1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0]) == pytest.approx(2 / 21)


def test_slope_refuses_fewer_than_two_values() -> None:
    with pytest.raises(ValueError, match="at least two"):
        slope([1.0])
