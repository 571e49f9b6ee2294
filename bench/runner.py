"""Runs the figures in order against the local servers (started if needed) and writes JSON and report."""

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from bench import context_read, fanout, freshness, ingest, memory, rebuild
from bench.report import machine, write_report
from bench.results import FIGURES, Run, failure, write_json
from bench.stack import FigureStack, raise_fd_limit

log = structlog.get_logger("bench")


@dataclass(frozen=True)
class Sizes:
    """How big each figure is; `quick` keeps the whole run to a few minutes."""

    ingest_events: int
    freshness_s: float
    read_open_s: float
    read_closed_s: float
    fanout_connections: int
    fanout_s: float
    memory_citizens: int

    @classmethod
    def for_run(cls, *, quick: bool) -> "Sizes":
        """The issue's sizes, or the quick ones."""
        if quick:
            return cls(50_000, 10, 10, 5, 10_000, 10, 2_000)
        return cls(200_000, 30, 30, 10, 10_000, 30, 10_000)


def run_bench(*, quick: bool, only: tuple[str, ...], work_dir: Path, say: Callable[[str], None]) -> Run:
    """Measure the figures (all, or `only` those); a figure that fails is noted and the others still run."""
    sizes = Sizes.for_run(quick=quick)
    wanted = [name for name in FIGURES if not only or name in only]
    fd_limit = raise_fd_limit()
    say(f"open files limit: {fd_limit}")
    run = Run()
    ingest_stack: FigureStack | None = None

    def figure(name: str, measure: Callable[[], None]) -> None:
        if name not in wanted:
            return
        say(f"{name}: measuring…")
        started = time.perf_counter()
        try:
            measure()
        except Exception as error:
            run.failures[name] = f"failed: {failure(error)}"
            say(f"{name}: FAILED\n{traceback.format_exc()}")
            return
        say(f"{name}: {json.dumps(run.to_json().get(name))} ({time.perf_counter() - started:.0f}s)")
        if name in run.notes:
            say(f"{name}: {run.notes[name]}")

    def do_ingest() -> None:
        nonlocal ingest_stack
        measured = ingest.measure(work_dir, count=sizes.ingest_events)
        run.figures["ingest"], ingest_stack = measured.figure, measured.stack
        run.notes["ingest"] = measured.describe()

    def do_rebuild() -> None:
        nonlocal ingest_stack
        stack, ingest_stack = ingest_stack, None  # closed here, whatever happens
        if stack is None:
            # Rebuild alone: fill a topic first, exactly as the ingest figure would.
            stack = ingest.measure(work_dir, count=sizes.ingest_events).stack
        try:
            run.figures["rebuild"], replayed, cpu = rebuild.measure(stack)
            run.notes["rebuild"] = cpu.describe(events=replayed)
        finally:
            stack.close()

    def do_freshness() -> None:
        result, latencies, live = freshness.measure(
            work_dir, citizens=10_000, streams=500, rate_per_s=1000, duration_s=sizes.freshness_s
        )
        run.figures["freshness"], run.latencies["freshness"] = result, latencies
        run.notes["freshness"] = live.cpu.describe()

    def do_context_read() -> None:
        result, latencies, cpu = context_read.measure(
            work_dir, rate_per_s=1000, open_s=sizes.read_open_s, closed_s=sizes.read_closed_s
        )
        run.figures["context_read"], run.latencies["context_read"] = result, latencies
        run.notes["context_read"] = (
            f"API CPU per request (user and system, closed loops): context {cpu.context_us:,.0f} us, "
            f"/healthz {cpu.baseline_us:,.0f} us, ratio {cpu.ratio:.2f}; unlike requests/s, this holds "
            "when other work shares the machine"
        )

    def do_fanout() -> None:
        result, latencies, live = fanout.measure(
            work_dir,
            connections=sizes.fanout_connections,
            rate_per_s=fanout.RATE_PER_S,
            duration_s=sizes.fanout_s,
        )
        run.figures["fanout"], run.latencies["fanout"] = result, latencies
        run.notes["fanout"] = live.cpu.describe()

    def do_memory() -> None:
        run.figures["memory"] = memory.measure(work_dir, citizens=sizes.memory_citizens, per=50)

    try:
        figure("ingest", do_ingest)
        figure("rebuild", do_rebuild)
        figure("freshness", do_freshness)
        figure("context_read", do_context_read)
        figure("fanout", do_fanout)
        figure("memory", do_memory)
    finally:
        # Left over when the rebuild was not wanted, or a failure or an interrupt came before it ran.
        if ingest_stack is not None:
            ingest_stack.close()
    return run


def write_outputs(
    run: Run,
    *,
    json_path: Path | None,
    report_dir: Path,
    command: str,
    machine_line: str,
    code: str = "unknown",
    started: str = "",
) -> None:
    """The JSON (when asked for) and the report with its plots."""
    if json_path is not None:
        write_json(run.to_json(), json_path)
    write_report(
        run, command=command, machine_line=machine_line, directory=report_dir, code=code, started=started
    )


__all__ = ["Sizes", "machine", "run_bench", "write_outputs"]
