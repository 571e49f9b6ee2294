"""`citizen-context bench`: the benchmark suite (see bench/ and the README, section Benchmarks)."""

import importlib.util
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from ops.cli.root import FiniteRange, fail, main
from ops.processes import ServiceError, sigterm_as_interrupt

FIGURE_NAMES = ("ingest", "freshness", "context_read", "fanout", "memory", "rebuild")
# Where a whole run's report goes: the one the README links to, kept in the repository.
FULL_REPORT_DIR = Path("docs/bench")


def default_report_dir(*, quick: bool, only: tuple[str, ...], data_dir: Path) -> Path:
    """Where the report goes when `--report-dir` is not given (pure). Only a whole run at full sizes
    replaces the repository's report: a quick or partial one written there would leave it with the smaller
    sizes, or with the other figures' rows gone. Those go under the local servers' data folder instead."""
    if quick or only:
        return data_dir / "bench" / "report"
    return FULL_REPORT_DIR


# What the benchmarks load that the product itself does not install: the project's `bench` extra.
BENCH_MODULES = ("confluent_kafka", "matplotlib")


def require_bench_extras() -> None:
    """Fail, saying what to install, unless the `bench` extra is installed (an image or a production
    install holds the product alone, and the benchmarks failed there with an import's traceback)."""
    missing = [name for name in BENCH_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        names = ", ".join(missing)
        fail(
            ServiceError(
                f"the benchmarks need the project's bench extra, not installed here (missing: {names}): "
                "pip install 'citizen-context[bench]', as `make bench` does"
            )
        )


@main.command()
@click.option("--quick", is_flag=True, help="Smaller sizes: the whole run takes a few minutes.")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the figures here."
)
@click.option(
    "--only", multiple=True, type=click.Choice(FIGURE_NAMES), help="Measure only this figure (repeatable)."
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=(
        f"Where the report (README.md) and the latency plots (PNG) go [default: {FULL_REPORT_DIR} for a whole"
        " run; with --quick or --only, bench/report under the servers' data folder]."
    ),
)
def bench(quick: bool, json_path: Path | None, only: tuple[str, ...], report_dir: Path | None) -> None:
    """Measure ingest, freshness, reads, fan-out, memory and rebuild against same-run ceilings."""
    require_bench_extras()
    from bench.report import revision
    from bench.runner import machine, run_bench, write_outputs
    from ops.cli.services import servers_running
    from ops.settings import ServicesSettings

    machine_line = machine()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    code = revision(Path(__file__).resolve().parents[2])
    data_dir = ServicesSettings().data_dir
    if report_dir is None:
        report_dir = default_report_dir(quick=quick, only=only, data_dir=data_dir)
    command = (
        "citizen-context bench"
        + " --quick" * quick
        + "".join(f" --only {name}" for name in only)
        + (f" --json {json_path}" if json_path is not None else "")
    )
    try:
        with sigterm_as_interrupt(), servers_running():
            run = run_bench(
                quick=quick,
                only=only,
                work_dir=data_dir / "bench",
                say=lambda text: click.echo(text, err=True),
            )
    except ServiceError as error:
        fail(error)
    write_outputs(
        run,
        json_path=json_path,
        report_dir=report_dir,
        command=command,
        machine_line=machine_line,
        code=code,
        started=started,
    )
    click.echo(f"report: {report_dir / 'README.md'}", err=True)
    click.echo(run.to_json())
    if run.failures:
        sys.exit(1)


@main.command()
@click.option(
    "--rounds",
    type=int,
    default=12,
    show_default=True,
    help="Rounds to run (the growth needs at least four).",
)
@click.option(
    "--streams",
    type=click.IntRange(min=1),
    default=2_000,
    show_default=True,
    help="Streams opened per round.",
)
@click.option(
    "--seconds",
    type=FiniteRange(min=1, max=3600),
    default=10.0,
    show_default=True,
    help="How long each round's streams receive changes.",
)
@click.option(
    "--same-citizens",
    is_flag=True,
    help="Stream the same citizens every round (new citizens' cached documents then stay out of the growth).",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the rounds here."
)
def soak(rounds: int, streams: int, seconds: float, same_citizens: bool, json_path: Path | None) -> None:
    """Open, feed and close streams round after round on one API; its memory after each round."""
    require_bench_extras()
    from bench import soak as stream_soak
    from bench.results import write_json
    from ops.cli.services import servers_running
    from ops.settings import ServicesSettings

    if rounds < stream_soak.MIN_ROUNDS:
        raise click.BadParameter(
            f"at least {stream_soak.MIN_ROUNDS} rounds are needed to tell growth from noise",
            param_hint="--rounds",
        )
    try:
        with sigterm_as_interrupt(), servers_running():
            run = stream_soak.measure(
                ServicesSettings().data_dir / "bench",
                rounds=rounds,
                streams=streams,
                seconds=seconds,
                rate_per_s=stream_soak.RATE_PER_S,
                say=lambda text: click.echo(text, err=True),
                same_citizens=same_citizens,
            )
    except ServiceError as error:
        fail(error)
    document = run.to_json()
    if json_path is not None:
        write_json(document, json_path)
    click.echo(json.dumps(document, indent=2))
    if not run.ok:
        # What was measured is written either way; the status says it is not the whole, clean run.
        click.secho(
            "error: the soak stopped early, or some streams failed, closed early, outlived their enquiry"
            " or stayed open (see above)",
            fg="red",
            err=True,
        )
        sys.exit(1)
