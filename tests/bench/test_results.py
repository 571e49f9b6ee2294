"""The JSON a bench run writes: exactly the keys the issue fixed, so runs compare over time."""

import json
import subprocess
from pathlib import Path

import pytest

from bench.report import LATENCY_TARGETS_MS, histogram_limit_ms, line, plot, revision, table, write_report
from bench.results import (
    FIGURES,
    ContextRead,
    Fanout,
    Freshness,
    Ingest,
    Memory,
    Rebuild,
    Run,
    failure,
    write_json,
)

EXPECTED_KEYS = {
    "ingest": {"events", "events_per_s", "raw_poll_events_per_s", "ratio"},
    "freshness": {"rate_per_s", "streams", "p50_ms", "p99_ms"},
    "context_read": {"rate_per_s", "p50_ms", "p99_ms", "concurrency", "rps", "baseline_rps", "ratio"},
    "fanout": {"connections", "rss_mb", "rate_per_s", "p99_ms"},
    "memory": {"bytes_per_event", "json_bytes_per_event", "ratio"},
    "rebuild": {"events_per_s"},
}


def full_run() -> Run:
    return Run(
        figures={
            "ingest": Ingest(events=200_000, events_per_s=30_000, raw_poll_events_per_s=60_000, ratio=0.5),
            "freshness": Freshness(rate_per_s=1000, streams=500, p50_ms=4.2, p99_ms=20.5),
            "context_read": ContextRead(
                rate_per_s=1000, p50_ms=2, p99_ms=9, concurrency=64, rps=3000, baseline_rps=5000, ratio=0.6
            ),
            "fanout": Fanout(connections=10_000, rss_mb=900, rate_per_s=200, p99_ms=60),
            "memory": Memory(bytes_per_event=600, json_bytes_per_event=320, ratio=1.875),
            "rebuild": Rebuild(events_per_s=20_000),
        },
        latencies={"freshness": [0.001, 0.002, 0.004]},
    )


def test_the_json_has_exactly_the_fixed_keys_in_order() -> None:
    document = json.loads(json.dumps(full_run().to_json()))
    assert list(document) == list(FIGURES)
    assert {name: set(figure) for name, figure in document.items()} == EXPECTED_KEYS


def test_figures_not_measured_are_left_out() -> None:
    run = full_run()
    del run.figures["fanout"]
    assert "fanout" not in run.to_json()


def test_targets_are_judged_per_figure() -> None:
    run = full_run()
    assert line(run.figures["ingest"]).met
    assert not line(run.figures["memory"]).met  # 1.875 x the JSON: above 1.5
    assert not line(run.figures["rebuild"]).met  # below 25,000/s
    assert not line(Fanout(connections=2_000, rss_mb=100, rate_per_s=200, p99_ms=10)).met  # too few streams


def test_report_has_the_table_command_code_and_plots(tmp_path: Path) -> None:
    path = write_report(
        full_run(),
        command="citizen-context bench",
        machine_line="test machine",
        directory=tmp_path,
        code="abc1234",
        started="2026-11-30 15:00 UTC",
    )
    text = path.read_text()
    assert table(full_run()) in text
    assert "`citizen-context bench`" in text
    assert "Code: abc1234, run started 2026-11-30 15:00 UTC" in text
    assert (tmp_path / "freshness.png").stat().st_size > 0
    assert "![freshness](freshness.png)" in text


def test_targets_judged_are_the_targets_stated() -> None:
    freshness = line(Freshness(rate_per_s=1000, streams=500, p50_ms=10.0, p99_ms=50.1))
    assert (freshness.target, freshness.met) == ("p50 <= 10 ms, p99 <= 50 ms", False)
    read = ContextRead(
        rate_per_s=1000, p50_ms=3, p99_ms=15, concurrency=64, rps=500, baseline_rps=1000, ratio=0.5
    )
    assert (line(read).target, line(read).met) == ("p99 <= 15 ms, >= 0.5 of the trivial endpoint", True)


def test_plots_are_drawn_for_long_tails_wide_spans_and_any_percentile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A target at a percentile without a line style of its own, and samples over seven decades, for which
    # matplotlib places no tick at 1, 2 and 5 of each.
    monkeypatch.setitem(LATENCY_TARGETS_MS, "fanout", {"p95": 80.0, "p99": 100.0})
    run = Run()
    run.latencies["fanout"] = [0.00001 * 1.5**n for n in range(40)] + [0.004] * 500
    run.latencies["freshness"] = [0.004] * 990 + [0.5] * 10  # a tail beyond the histogram's reach
    written = plot(run, tmp_path)
    assert [path.name for path in written] == ["fanout.png", "freshness.png"]
    assert all(path.stat().st_size > 0 for path in written)


def test_notes_go_to_the_report_not_the_json(tmp_path: Path) -> None:
    run = full_run()
    run.notes["context_read"] = "API CPU per request: context 900 us"
    text = write_report(run, command="c", machine_line="m", directory=tmp_path).read_text()
    assert "- **context_read**: API CPU per request: context 900 us" in text
    assert "900 us" not in json.dumps(run.to_json())


def test_a_failure_is_reported_by_type_and_first_line() -> None:
    assert failure(TimeoutError("no answer\nin 30 s")) == "TimeoutError: no answer"
    assert failure(RuntimeError()) == "RuntimeError: "
    assert failure(ValueError("x" * 500)) == "ValueError: " + "x" * 300


def test_a_document_is_written_as_indented_json_in_a_folder_made_for_it(tmp_path: Path) -> None:
    path = tmp_path / "new" / "run.json"
    write_json({"ingest": {"events": 3}}, path)
    assert path.read_text() == '{\n  "ingest": {\n    "events": 3\n  }\n}\n'


def test_a_run_names_the_commit_it_measured_or_says_it_cannot(tmp_path: Path) -> None:
    project = Path(__file__).resolve().parents[2]
    head = subprocess.run(
        ["git", "-C", str(project), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert revision(project).removesuffix("+changes") == head
    assert revision(tmp_path) == "unknown"  # not a git checkout


@pytest.mark.parametrize(
    ("p99_ms", "targets", "limit_ms"),
    [
        (20.0, {}, 40.0),  # no target: twice the p99
        (5.0, {"p99": 15.0}, 18.0),  # well within its target: the target still shows
        (80.0, {"p50": 10.0, "p99": 50.0}, 160.0),  # past its targets: the p99 decides
    ],
)
def test_a_histogram_reaches_past_its_p99_and_every_target(
    p99_ms: float, targets: dict[str, float], limit_ms: float
) -> None:
    assert histogram_limit_ms(p99_ms, targets) == pytest.approx(limit_ms)
