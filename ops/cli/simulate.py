"""`citizen-context simulate`: synthetic traffic for many citizens, at a chosen rate, with a progress bar."""

import contextlib
import sys
import time
from typing import Any

import click
from click.core import ParameterSource

from ops.cli.root import FiniteRange, counted, main, require_kafka
from ops.processes import sigterm_as_interrupt, uninterrupted

# The slowest traffic `simulate` sends (one record every 100 s), and so what `dev --simulate-rate` may ask.
MIN_SIMULATED_RATE = 0.01


def _citizen_id(value: str) -> str:
    """`value` if it is a citizen id as events carry it; a usage error naming the option otherwise."""
    import re

    from models.events import CITIZEN_ID_PATTERN

    if not re.fullmatch(CITIZEN_ID_PATTERN, value):
        raise click.BadParameter(
            f"{value!r} is not a citizen id: letters, digits and ._:@+-, at most 128 characters, the first "
            "a letter or digit"
        )
    return value


@main.command()
@click.option(
    "--citizens",
    default=50,
    show_default=True,
    type=click.IntRange(0, 100_000),
    help="Simulated citizens, each with a profile (0: only those named with --citizen).",
)
@click.option(
    "--citizen",
    "extra",
    multiple=True,
    callback=lambda _ctx, _param, ids: tuple(_citizen_id(value) for value in ids),
    help="Also send live interactions for this existing citizen (repeatable; no profile is sent). "
    "Named citizens share half of the records.",
)
@click.option(
    "--rate",
    default=5.0,
    show_default=True,
    type=FiniteRange(min=MIN_SIMULATED_RATE, max=100_000),
    help="Records/second.",
)
@click.option("--count", default=None, type=click.IntRange(min=1), help="Stop after this many records.")
@click.option(
    "--duration",
    default=None,
    type=FiniteRange(min=0.1, max=7 * 24 * 3600),
    help="Stop after this many seconds (at most a week).",
)
@click.option(
    "--malformed",
    default=4,
    show_default=True,
    type=click.IntRange(min=0),
    help="Malformed records among them, spread out, at most half (they must reach the dead-letter topic).",
)
@click.option("--seed", default=None, type=int, help="Make the traffic reproducible.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def simulate(
    citizens: int,
    extra: tuple[str, ...],
    rate: float,
    count: int | None,
    duration: float | None,
    malformed: int,
    seed: int | None,
    progress: bool,
) -> None:
    """Publish realistic synthetic interactions to Kafka (bounded: --count, --duration; default 500)."""
    from kafka.errors import KafkaError

    from events.producer import create_producer
    from events.settings import KafkaSettings
    from events.simulate import Simulator, malformed_due, run_length

    if citizens == 0 and not extra:
        raise click.UsageError("simulate at least one citizen: --citizens 1 or more, or --citizen ID")
    total = run_length(count, duration, rate)
    # Spread among good records, never more than them: a short run of junk alone would fill no desk.
    if malformed > total // 2:
        if click.get_current_context().get_parameter_source("malformed") is ParameterSource.COMMANDLINE:
            click.echo(
                f"--malformed {malformed} is more than half of {total} records: {total // 2} will be sent"
            )
        malformed = total // 2

    kafka = KafkaSettings()
    require_kafka(kafka.bootstrap_list)
    simulator = Simulator(citizens=citizens, extra_citizens=extra, seed=seed)
    producer = create_producer(kafka.bootstrap_list, max_block_ms=10_000)
    failures: list[BaseException] = []
    # Counted as Kafka acknowledges them: what the summary says was published is in the topic.
    acknowledged: list[object] = []
    sent = planted = 0
    stopped: KafkaError | None = None
    interrupted = False
    started = time.monotonic()
    ends_at = started + duration if duration is not None else None
    bar, task = _progress(total, progress)
    # A SIGTERM stops it as Ctrl-C does: what was sent is flushed and summed up; a second one is ignored.
    with sigterm_as_interrupt():
        try:
            for index in range(total):
                # Paced against the start, not the previous send, so the rate holds on average.
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if ends_at is not None and time.monotonic() >= ends_at:
                    break
                # How far the run is, by records or by time, whichever is further: a run bound by --duration
                # whose --rate cannot be reached ends before its last positions, and by its positions alone
                # it sent none of the malformed records meant for them.
                done = index / total
                if duration is not None:
                    done = max(done, (time.monotonic() - started) / duration)
                junk = malformed_due(planted, malformed, done=done, sent=sent)
                record = simulator.malformed_record() if junk else simulator.next_record()
                # Sent and counted as one step: an interrupt between the two would leave a record
                # published but not in the summary.
                with uninterrupted():
                    try:
                        future = producer.send(
                            kafka.topic, key=record.key, value=record.value, headers=record.headers
                        )
                    except KafkaError as error:
                        # Kafka takes no more: the topic's metadata, or room for the record, out of reach
                        # for max_block_ms. What was sent is summed up.
                        stopped = error
                        break
                    future.add_callback(acknowledged.append)
                    future.add_errback(failures.append)
                    sent += 1
                    planted += junk
                if bar is not None:
                    bar.update(task, completed=sent, malformed=planted)
            # Acknowledgements that do not come in time are waited for again by `close`; those still
            # missing then are counted below.
            with contextlib.suppress(KafkaError):
                producer.flush(timeout=30)
        except KeyboardInterrupt:
            # What was sent is summed up below, once `close` has given it a moment to be acknowledged.
            interrupted = True
        finally:
            # `close` waits for the acknowledgements first (Kafka away, they do not come), and raises when
            # they do not: those are counted below, not lost in a traceback.
            with contextlib.suppress(KafkaError):
                producer.close(timeout=10)
            if bar is not None:
                bar.stop()
    elapsed = time.monotonic() - started
    click.echo(
        f"published {counted(len(acknowledged), 'record')} to {kafka.topic} in {elapsed:.1f}s "
        f"({planted} malformed, for the dead-letter topic)"
    )
    if stopped is not None:
        raise click.ClickException(
            f"Kafka took no more records ({stopped!r}): is its broker up, and topic {kafka.topic} there? "
            "(`citizen-context services up` creates it)"
        )
    unconfirmed = sent - len(acknowledged) - len(failures)
    if failures or unconfirmed:
        why = f": {failures[0]!r}" if failures else ", not in time"
        raise click.ClickException(
            f"{len(failures) + unconfirmed} of {counted(sent, 'record')} sent were not acknowledged{why}"
        )
    if interrupted:
        sys.exit(130)  # as a shell reports a command ended by Ctrl-C, whose summary is above


def _progress(total: int, enabled: bool) -> tuple[Any, Any]:
    if not enabled:
        return None, None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("simulate"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[malformed]} malformed"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    task = bar.add_task("simulate", total=total, malformed=0)
    bar.start()
    return bar, task
