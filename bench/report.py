"""The report of a run: targets met or not, a Markdown table, and plots of the latency distributions."""

import math
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.results import ContextRead, Fanout, Figure, Freshness, Ingest, Memory, Rebuild, Run
from bench.stats import summarise_ms

# The latency targets (ms) of the figures that have them, by percentile: the table checks them and the plots
# draw them.
LATENCY_TARGETS_MS: dict[str, dict[str, float]] = {
    "freshness": {"p50": 10.0, "p99": 50.0},
    "context_read": {"p99": 15.0},
    "fanout": {"p99": 100.0},
}


def _latency_targets(figure: str) -> str:
    """A figure's latency targets as the table states them: "p50 <= 10 ms, p99 <= 50 ms"."""
    return ", ".join(f"{name} <= {target:g} ms" for name, target in LATENCY_TARGETS_MS[figure].items())


def _latency_met(figure: str, **measured_ms: float) -> bool:
    """Whether every latency target of a figure is met by what was measured."""
    return all(measured_ms[name] <= target for name, target in LATENCY_TARGETS_MS[figure].items())


@dataclass(frozen=True)
class Line:
    """One row of the table: what was measured, against what, the target, and whether it is met."""

    figure: str
    measured: str
    compared: str
    target: str
    met: bool


def _ingest(f: Ingest) -> Line:
    return Line(
        "ingest",
        f"{f.events_per_s:,.0f} events/s ({f.events:,} events)",
        f"bare poll loop {f.raw_poll_events_per_s:,.0f}/s (median of its passes), ratio {f.ratio:.2f}",
        ">= 25,000/s and >= 0.3 of the poll loop",
        f.events_per_s >= 25_000 and f.ratio >= 0.3,
    )


def _freshness(f: Freshness) -> Line:
    return Line(
        "freshness",
        f"p50 {f.p50_ms:.1f} ms, p99 {f.p99_ms:.1f} ms",
        f"{f.rate_per_s:,.0f} events/s, {f.streams:,} streams open",
        _latency_targets("freshness"),
        _latency_met("freshness", p50=f.p50_ms, p99=f.p99_ms),
    )


def _context_read(f: ContextRead) -> Line:
    return Line(
        "context read",
        f"p50 {f.p50_ms:.1f} ms, p99 {f.p99_ms:.1f} ms at {f.rate_per_s:,.0f}/s; {f.rps:,.0f} req/s",
        f"trivial endpoint {f.baseline_rps:,.0f} req/s ({f.concurrency} connections), ratio {f.ratio:.2f}",
        f"{_latency_targets('context_read')}, >= 0.5 of the trivial endpoint",
        _latency_met("context_read", p50=f.p50_ms, p99=f.p99_ms) and f.ratio >= 0.5,
    )


def _fanout(f: Fanout) -> Line:
    return Line(
        "fan-out",
        f"{f.connections:,} streams in {f.rss_mb:,.0f} MiB; delivery p99 {f.p99_ms:.1f} ms",
        f"{f.rate_per_s:,.0f} changes/s on watched citizens",
        f"10,000 streams in <= 1.5 GB, {_latency_targets('fanout')}",
        f.connections >= 10_000 and f.rss_mb <= 1536 and _latency_met("fanout", p99=f.p99_ms),
    )


def _memory(f: Memory) -> Line:
    return Line(
        "memory",
        f"{f.bytes_per_event:,.0f} bytes/event",
        f"event JSON {f.json_bytes_per_event:,.0f} bytes, ratio {f.ratio:.2f}",
        "<= 1.5 x the JSON",
        f.ratio <= 1.5,
    )


def _rebuild(f: Rebuild) -> Line:
    return Line("rebuild", f"{f.events_per_s:,.0f} events/s", "", ">= 25,000/s", f.events_per_s >= 25_000)


_LINES: dict[type, Callable[..., Line]] = {
    Ingest: _ingest,
    Freshness: _freshness,
    ContextRead: _context_read,
    Fanout: _fanout,
    Memory: _memory,
    Rebuild: _rebuild,
}


def line(figure: Figure) -> Line:
    """The table row of one figure."""
    return _LINES[type(figure)](figure)


def table(run: Run) -> str:
    """The figures as a Markdown table."""
    rows = ["| Figure | Measured | Against | Target | Met |", "| --- | --- | --- | --- | --- |"]
    for figure in run.figures.values():
        row = line(figure)
        met = "yes" if row.met else "no"
        rows.append(f"| {row.figure} | {row.measured} | {row.compared} | {row.target} | {met} |")
    return "\n".join(rows)


def machine() -> str:
    """What the run ran on, in one line."""
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = ["?"]
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average before the run {' '.join(load)}"
    )


def revision(directory: Path) -> str:
    """The commit of the code in `directory` (a git checkout's `HEAD`, with "+changes" when files differ
    from it), or "unknown": runs compare only at the code they measured."""

    def git(*arguments: str) -> str:
        asked = ["git", "-C", str(directory), *arguments]
        return subprocess.run(asked, capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+changes" if changed else "")


def write_report(
    run: Run, *, command: str, machine_line: str, directory: Path, code: str = "unknown", started: str = ""
) -> Path:
    """docs/bench/README.md with the table, the command, the machine and the plots; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    plots = plot(run, directory)
    parts = [
        "# Benchmark report",
        "",
        "Written by `citizen-context bench`; the README (section Benchmarks) says what each figure means.",
        "",
        f"Command: `{command}`  ",
        f"Code: {code}, run started {started or 'at an unknown time'}  ",
        f"Machine: {machine_line}",
        "",
        table(run),
        "",
    ]
    notes = {**run.notes, **run.failures}
    if notes:
        parts += ["## Notes", "", *(f"- **{name}**: {note}" for name, note in notes.items()), ""]
    if plots:
        parts += ["## Latency distributions", "", *(f"![{p.stem}]({p.name})" for p in plots), ""]
    path = directory / "README.md"
    path.write_text("\n".join(parts))
    return path


def plot(run: Run, directory: Path) -> list[Path]:
    """One PNG per latency distribution: a histogram and the cumulative share, each marked with the measured
    p50 and p99 and the figure's latency targets (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        return []
    written = []
    for name, seconds in run.latencies.items():
        if not seconds:
            continue
        values = sorted(s * 1000 for s in seconds)
        summary = summarise_ms(seconds)
        targets = LATENCY_TARGETS_MS.get(name, {})
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
        # The histogram shows the body; a long tail (a few slow deliveries) would squeeze it into a few bars.
        # The cumulative share, on a log scale, shows every sample.
        shown_up_to = histogram_limit_ms(summary.p99_ms, targets)
        body = [v for v in values if v <= shown_up_to]
        left.hist(body, bins=80, color=_BARS)
        left.set_xlabel("latency (ms)")
        left.set_ylabel("samples")
        beyond = len(values) - len(body)
        left.set_title(
            f"{name}: distribution" + (f" ({beyond:,} beyond {shown_up_to:.3g} ms)" if beyond else "")
        )
        shares = [(i + 1) / len(values) for i in range(len(values))]
        right.plot(values, shares, color=_BARS)
        right.set_xscale("log")
        # Plain numbers (1, 2, 5, 10, 20, 50, ...) rather than powers of ten, and no labels on minor ticks,
        # which overlap when the samples span less than a decade or two. Over many decades, matplotlib
        # places no tick at all at 1, 2 and 5 of each: decades only, then.
        spans_decades = math.log10(values[-1] / max(values[0], _SHORTEST_MS))
        subs = (1.0, 2.0, 5.0) if spans_decades <= _MOST_DECADES_LABELLED else (1.0,)
        right.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        right.xaxis.set_major_formatter(FuncFormatter(lambda x, _position: f"{x:g}"))
        right.xaxis.set_minor_formatter(NullFormatter())
        right.set_xlabel("latency (ms, log scale)")
        right.set_ylabel("share of samples at or below")
        right.set_title(f"{name}: cumulative ({len(values):,} samples)")
        right.grid(True, which="major", alpha=0.3)
        # Each percentile has its line style: grey where it was measured, red where its target is.
        measured = {"p50": summary.p50_ms, "p99": summary.p99_ms}
        for axis in (left, right):
            for percentile_name, at in measured.items():
                style = _LINE_STYLES.get(percentile_name, _OTHER_STYLE)
                axis.axvline(at, color=_MEASURED, linestyle=style, label=f"{percentile_name} {at:.1f} ms")
            for percentile_name, target in targets.items():
                style = _LINE_STYLES.get(percentile_name, _OTHER_STYLE)
                axis.axvline(
                    target, color=_TARGET, linestyle=style, label=f"{percentile_name} target {target:g} ms"
                )
        right.legend(loc="lower right", fontsize=8)
        figure.tight_layout()
        path = directory / f"{name}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def histogram_limit_ms(p99_ms: float, targets: dict[str, float]) -> float:
    """How far a histogram reaches: twice the p99, and past every target, so that each line drawn shows."""
    return max([p99_ms * 2, *(target * 1.2 for target in targets.values())])


_BARS, _MEASURED, _TARGET = "#1f6f8b", "#333333", "#c0392b"
_LINE_STYLES, _OTHER_STYLE = {"p50": "--", "p99": ":"}, "-."
# The log axis labels 1, 2 and 5 of each decade over up to this many decades, and each decade beyond.
_MOST_DECADES_LABELLED = 3
_SHORTEST_MS = 0.001
