"""The stream soak: its arithmetic, its document, and a short run against the servers."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.live import streams_open
from bench.soak import (
    MIN_ROUNDS,
    Soak,
    SoakRound,
    growth_per_round,
    measure,
    round_citizens,
)
from ops.cli.root import main


def _round(number: int, rss_after: float, *, left_open: int = 0, ended: int = 10) -> SoakRound:
    return SoakRound(
        round=number,
        streams=10,
        failed=0,
        ended=ended,
        closed_early=0,
        left_open=left_open,
        changes=10,
        peak_rss_mb=rss_after + 1,
        rss_after_mb=rss_after,
    )


def test_growth_leaves_out_the_earlier_half_where_caches_fill() -> None:
    filling_then_flat = [100.0, 150.0, 200.0, 240.0, 240.0, 240.0, 240.0, 240.0]
    assert growth_per_round(filling_then_flat) == 0.0
    leaking = [100.0, 110.0, 120.0, 130.0, 140.0, 150.0]
    assert growth_per_round(leaking) == pytest.approx(10.0)


def test_growth_needs_enough_rounds_to_mean_anything() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_ROUNDS} rounds"):
        growth_per_round([100.0] * (MIN_ROUNDS - 1))


def test_each_round_streams_new_citizens_unless_asked_for_the_same() -> None:
    assert round_citizens(0, 3, same_citizens=False) == [1, 2, 3]
    assert round_citizens(2, 3, same_citizens=False) == [7, 8, 9]
    assert round_citizens(2, 3, same_citizens=True) == [1, 2, 3]


def test_the_document_has_every_round_and_the_growth() -> None:
    soak = Soak(start_rss_mb=90.0, rounds=[_round(n, 100.0 + 2 * n) for n in range(1, 7)])
    document = json.loads(json.dumps(soak.to_json()))
    assert document["start_rss_mb"] == 90.0
    assert document["growth_mb_per_round"] == pytest.approx(2.0)
    assert [r["round"] for r in document["rounds"]] == [1, 2, 3, 4, 5, 6]
    assert document["error"] is None
    assert set(document["rounds"][0]) == {
        "round",
        "streams",
        "failed",
        "ended",
        "closed_early",
        "left_open",
        "changes",
        "peak_rss_mb",
        "rss_after_mb",
    }


def test_too_few_rounds_have_no_growth_rather_than_a_meaningless_one() -> None:
    soak = Soak(start_rss_mb=90.0, rounds=[_round(n, 100.0 * n) for n in range(1, MIN_ROUNDS)])
    assert soak.to_json()["growth_mb_per_round"] is None


def test_a_stream_left_open_or_a_run_cut_short_is_not_ok() -> None:
    clean = [_round(n, 100.0) for n in range(1, 5)]
    assert Soak(start_rss_mb=90.0, rounds=clean).ok
    assert not Soak(start_rss_mb=90.0, rounds=[*clean, _round(5, 100.0, left_open=1)]).ok
    # A stream that outlived its enquiry's completion (the desktop had to close it).
    assert not Soak(start_rss_mb=90.0, rounds=[*clean, _round(5, 100.0, ended=9)]).ok
    assert not Soak(start_rss_mb=90.0, rounds=clean, error="round 5: TimeoutError: no streams").ok


def test_open_streams_are_read_from_the_apis_metrics() -> None:
    exposition = (
        "# HELP citizen_context_api_streams_open WebSocket streams open on this process.\n"
        "# TYPE citizen_context_api_streams_open gauge\n"
        "citizen_context_api_streams_open 3.0\n"
    )
    assert streams_open(exposition) == 3
    with pytest.raises(ValueError, match="no citizen_context_api_streams_open"):
        streams_open("# TYPE other gauge\nother 1.0\n")


def test_the_command_refuses_too_few_rounds_before_starting_anything() -> None:
    result = CliRunner().invoke(main, ["soak", "--rounds", str(MIN_ROUNDS - 1)])
    assert result.exit_code == 2
    assert f"at least {MIN_ROUNDS} rounds" in result.output


def test_a_short_soak_opens_feeds_and_ends_each_rounds_streams(tmp_path: Path) -> None:
    said: list[str] = []
    run = measure(tmp_path, rounds=2, streams=3, seconds=1, rate_per_s=30, say=said.append)
    assert run.error is None
    assert [r.round for r in run.rounds] == [1, 2]
    for done in run.rounds:
        # Every stream opened, lasted its round, was closed by the API as its enquiry was completed, and
        # counted closed.
        assert (done.streams, done.failed, done.ended, done.closed_early, done.left_open) == (3, 0, 3, 0, 0)
    # Every change lands on a watched citizen. The first round may begin while the new consumer is still
    # joining its group (its readiness does not wait for that), so only the last round is sure to be fed.
    # The count leaves out each stream's last change, its enquiry's completion.
    assert run.rounds[-1].changes > 0
    assert run.ok
    assert len(said) == 2 + 2  # the open files limit, the memory before the first round, each round
