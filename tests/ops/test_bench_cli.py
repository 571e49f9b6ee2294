"""`citizen-context bench`: where its report goes when not told."""

from pathlib import Path

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
