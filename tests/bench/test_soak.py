"""The stream soak: its arithmetic, its document, and a short run against the servers."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.soak import MIN_ROUNDS, Soak, SoakRound, growth_per_round, measure, round_citizens
from ops.cli.root import main


def _round(number: int, rss_after: float) -> SoakRound:
    return SoakRound(
        round=number, streams=10, failed=0, changes=10, peak_rss_mb=rss_after + 1, rss_after_mb=rss_after
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
    assert set(document["rounds"][0]) == {
        "round",
        "streams",
        "failed",
        "changes",
        "peak_rss_mb",
        "rss_after_mb",
    }


def test_the_command_refuses_too_few_rounds_before_starting_anything() -> None:
    result = CliRunner().invoke(main, ["soak", "--rounds", str(MIN_ROUNDS - 1)])
    assert result.exit_code == 2
    assert f"at least {MIN_ROUNDS} rounds" in result.output


def test_a_short_soak_opens_feeds_and_closes_each_rounds_streams(tmp_path: Path) -> None:
    said: list[str] = []
    run = measure(tmp_path, rounds=MIN_ROUNDS, streams=3, seconds=1, rate_per_s=30, say=said.append)
    assert [r.round for r in run.rounds] == list(range(1, MIN_ROUNDS + 1))
    for done in run.rounds:
        assert (done.streams, done.failed) == (3, 0)
        assert done.peak_rss_mb > 0
        assert done.rss_after_mb > 0
    # Every change lands on a watched citizen. The first round may begin while the new consumer is still
    # joining its group, so its changes can come after its streams have closed; the later rounds' cannot.
    assert all(done.changes > 0 for done in run.rounds[1:])
    assert run.start_rss_mb > 0
    assert len(said) == 1 + MIN_ROUNDS  # the memory before the first round, then each round
