"""`citizen-context bench`: where its report goes when not told, and what it needs installed."""

import importlib.util
from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli import main
from ops.cli.bench import FULL_REPORT_DIR, default_report_dir


def test_only_a_whole_run_replaces_the_repository_report() -> None:
    data = Path("var/data")
    assert default_report_dir(quick=False, only=(), data_dir=data) == FULL_REPORT_DIR == Path("docs/bench")
    # A quick run, or one of some figures, would leave the repository's report with smaller sizes or with
    # the other figures' rows gone: it goes under the servers' data folder instead.
    partial = data / "bench" / "report"
    assert default_report_dir(quick=True, only=(), data_dir=data) == partial
    assert default_report_dir(quick=False, only=("ingest",), data_dir=data) == partial
    assert default_report_dir(quick=True, only=("ingest", "rebuild"), data_dir=data) == partial


@pytest.mark.parametrize("command", [["bench", "--quick"], ["soak"]])
def test_without_the_bench_extra_the_benchmarks_say_what_to_install(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An image or a production install holds the product alone: the benchmarks failed with a traceback.
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "confluent_kafka" else real(name, *args),
    )
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1, result.output
    assert "the benchmarks need the project's bench extra, not installed here (missing: confluent_kafka)" in (
        result.output
    )
    assert "pip install 'citizen-context[bench]'" in result.output
