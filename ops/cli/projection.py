"""Tools on the projection and the contract: `rebuild`, `dlq`, `contract` and `settings`."""

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ops.cli.root import (
    FiniteRange,
    counted,
    database_settings,
    fail,
    main,
    require_kafka,
    settings_problem,
    settings_problems,
)
from ops.processes import ServiceError, sigterm_as_interrupt, uninterrupted

if TYPE_CHECKING:
    from context.store import ProjectionWriter, RedriveLog
    from events.deadletter import StoredDeadLetter
    from events.settings import KafkaSettings


def _writer() -> "ProjectionWriter":
    import redis

    from context.settings import RedisSettings, TimelineSettings, redis_client_options
    from context.store import ProjectionWriter

    settings = RedisSettings()
    client = redis.Redis.from_url(str(settings.url), **redis_client_options())
    return ProjectionWriter(client, prefix=settings.key_prefix, timeline=TimelineSettings())


@main.command()
@click.option(
    "--grace",
    default=2.0,
    show_default=True,
    type=FiniteRange(min=0, max=3600),
    help="Seconds to wait before deleting the old generation.",
)
@click.option(
    "--processes",
    default=2,
    show_default=True,
    type=click.IntRange(min=1, max=64),
    help="Processes that replay the topic's partitions at once (a topic of 20,000 records or more).",
)
def rebuild(grace: float, processes: int) -> None:
    """Rebuild the projection from Kafka into a new generation, then switch to it (repave)."""
    from context.settings import IdentitySettings
    from events.heap import settle_heap
    from events.rebuild import MissingTopic, RebuildInterrupted
    from events.rebuild import rebuild as run_rebuild
    from events.rebuild_shares import ShareFailed
    from events.settings import KafkaSettings
    from events.signing import ErasureSigner, SigningSettings, signing_cautions

    kafka = KafkaSettings()
    signing = SigningSettings()
    erasures = ErasureSigner.from_settings(signing)
    for caution in signing_cautions(signing, kafka_on_loopback=kafka.on_loopback):
        click.echo(f"warning: {caution}", err=True)
    require_kafka(kafka.bootstrap_list)
    writer = _writer()
    # Redis unreachable from the start is said at once: the replay would retry each write for ever, as it
    # does through a failover half-way.
    writer.client.ping()
    settle_heap()
    bar: list[Any] = []

    def start(total: int) -> None:
        click.echo(f"replaying {total} records of {kafka.topic} into a new generation")
        bar.append(click.progressbar(length=total, label="rebuild", file=sys.stderr).__enter__())

    try:
        # A SIGTERM stops it as Ctrl-C does: a generation not switched to yet is dropped, and one replaced
        # once the switch is done (events/rebuild.py); a second Ctrl-C does not cut that short.
        with sigterm_as_interrupt():
            report = run_rebuild(
                kafka=kafka,
                writer=writer,
                default_region=IdentitySettings().default_region,
                erasures=erasures,
                on_start=start,
                progress=lambda n: bar[0].update(n) if bar else None,
                grace_s=grace,
                cleanup_guard=uninterrupted,
                processes=processes,
            )
    except RebuildInterrupted as error:
        if bar:
            bar.pop().__exit__(None, None, None)  # the bar's line ends before the message
        click.secho(f"error: {error}", fg="red", err=True)
        sys.exit(130)  # as a shell reports a command ended by Ctrl-C
    except MissingTopic as error:
        fail(ServiceError(f"{error} (CITIZEN_CONTEXT_KAFKA_TOPIC); the projection served is unchanged"))
    except ShareFailed as error:
        fail(ServiceError(f"rebuild failed: {error}; the projection served is unchanged"))
    finally:
        if bar:
            bar[0].__exit__(None, None, None)
        writer.client.close()
    click.echo(
        f"serving epoch {report.epoch} (was {report.previous_epoch}): "
        f"{counted(report.records, 'record')} replayed in {report.seconds:.1f}s "
        f"({report.records_per_s:,.0f}/s): {counted(report.applied, 'change')}, {report.unchanged} changing "
        "nothing (applied already, older than what is held, or of an erased citizen), "
        f"{report.skipped} skipped{_by_reason(report.skipped_by_reason)}; "
        f"{report.keys_removed} old keys removed"
    )


def _by_reason(counts: dict[str, int]) -> str:
    """ " (30 not-json, 12 unresolved-identity)", most first; nothing for no count."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return f" ({', '.join(f'{count} {reason}' for reason, count in ranked)})" if ranked else ""


@main.group()
def dlq() -> None:
    """The dead-letter topic: records the consumer could not use, and why."""


def _known_reason(_context: click.Context, _parameter: click.Parameter, reason: str | None) -> str | None:
    """A `--reason` as given, if it is one the consumer gives: a mistyped one would find nothing, and look
    like an empty topic."""
    from events.contract import REASONS

    if reason is not None and reason not in REASONS:
        raise click.BadParameter(f"{reason!r} is no reason the consumer gives; known: {', '.join(REASONS)}")
    return reason


# The reasons a record can be used once something outside it changed: an identifier learnt since, a value in
# Redis mended. The others are the record's own faults: redriven as they are, they only come back.
RETRIABLE_REASONS = ("unresolved-identity", "refused")


@dlq.command("list")
@click.option(
    "--reason", default=None, callback=_known_reason, help="Only records dead-lettered for this reason."
)
def dlq_list(reason: str | None) -> None:
    """Show the dead-lettered records (position, origin, reason, redriven or not), never their content."""
    from events.deadletter import dead_letter_topic
    from events.settings import KafkaSettings

    kafka = KafkaSettings()
    letters, log, done = _dead_letters(kafka, reason)
    behind = log.redrives_behind([letter.landing for letter in letters])
    oldest = _redrive_horizon()
    states: dict[str, int] = {}
    for letter in letters:
        # "pending": a plain `dlq redrive` sends it; "held": the record's own fault, which only
        # `dlq redrive --reason` sends, as it is; "kept": no redrive sends it (_not_redrivable).
        if letter.position in done:
            state = "redriven"
        elif _not_redrivable(letter, oldest):
            state = "kept"
        else:
            state = "pending" if letter.reason in RETRIABLE_REASONS else "held"
        states[state] = states.get(state, 0) + 1
        where = f"{letter.dlq_partition}:{letter.dlq_offset}"
        back = (
            f" (back after {counted(behind[letter.landing], 'redrive')})" if letter.landing in behind else ""
        )
        click.echo(
            f"{where}  {letter.dead_lettered_at}  {state:8}  from {letter.origin}  {letter.reason}: "
            f"{letter.detail}{back}"
        )
    held, kept = states.get("held", 0), states.get("kept", 0)
    click.echo(
        f"{counted(len(letters), 'record')} in {dead_letter_topic(kafka.topic)}"
        + (f" with reason {reason}" if reason else "")
        + f", {states.get('pending', 0)} pending"
        + (f", {held} held (their own faults: `dlq redrive` sends them only by --reason)" if held else "")
        + (f", {kept} kept (no redrive sends them: see `dlq redrive`)" if kept else "")
    )


def _redrive_horizon() -> datetime:
    """The oldest a letter may be and be redriven: older than the timeline's age cap, its event may outlive
    its citizen's erasure mark, and bring back what it teaches (its profile fields, its identifiers)."""
    from context.settings import TimelineSettings

    return datetime.now(UTC) - TimelineSettings().max_age


def _not_redrivable(letter: "StoredDeadLetter", oldest: datetime) -> str | None:
    """Why no redrive sends a letter, or None when one may."""
    if not letter.holds_original:
        # It would publish another record: its original is still in its topic, at the position given.
        return "the letter does not hold the record"
    if _dead_lettered_before(letter.dead_lettered_at, oldest):
        return "older than the timeline's age cap"
    return None


@dlq.command("redrive")
@click.option(
    "--reason",
    default=None,
    callback=_known_reason,
    help=f"Only records dead-lettered for this reason (default: {' and '.join(RETRIABLE_REASONS)}, "
    "the reasons a retry can mend).",
)
def dlq_redrive(reason: str | None) -> None:
    """Publish pending dead-lettered records, unchanged, back to their topic; each is redriven once."""
    from events.deadletter import redrive
    from events.producer import create_producer
    from events.settings import KafkaSettings

    kafka = KafkaSettings()
    letters, log, done = _dead_letters(kafka, reason)
    if reason is None:
        letters = [letter for letter in letters if letter.reason in RETRIABLE_REASONS]
    waiting = [letter for letter in letters if letter.position not in done]
    oldest = _redrive_horizon()
    pending = []
    for letter in waiting:
        why = _not_redrivable(letter, oldest)
        if why:
            click.echo(f"not redriven: {letter.origin} ({letter.reason}): {why}")
        else:
            pending.append(letter)
    # A letter whose record a redrive put there came back: its cause was not mended by then.
    behind = log.redrives_behind([letter.landing for letter in pending])
    producer = create_producer(kafka.bootstrap_list, max_block_ms=10_000)
    try:
        result = redrive(producer, pending)
    finally:
        producer.close()
    # Marked only once Kafka has them: a failed one is simply redriven again by the next run.
    log.mark(
        [letter.position for letter in result.sent],
        landed={result.landed[letter.position]: behind.get(letter.landing, 0) + 1 for letter in result.sent},
    )
    for letter, error in result.failed:
        click.echo(f"not redriven: {letter.origin} ({letter.reason}): Kafka did not take it ({error})")
    again = [letter for letter in result.sent if letter.landing in behind]
    for letter in again:
        back = counted(behind[letter.landing], "redrive")
        click.echo(f"redriven again: {letter.origin} ({letter.reason}): back after {back}")
    click.echo(f"redrove {counted(len(result.sent), 'record')}")
    if again:
        click.echo(
            f"warning: {len(again)} of them came back after an earlier redrive: a record whose cause is not "
            "mended is dead-lettered again, as a new letter, every time it is redriven"
        )
    if result.failed:
        raise SystemExit(1)


def _dead_lettered_before(dead_lettered_at: str, moment: datetime) -> bool:
    """Whether a letter's `dlq.time` is before `moment` (a letter without a readable one is not)."""
    try:
        return datetime.fromisoformat(dead_lettered_at) < moment
    except ValueError:
        return False


def _dead_letters(
    kafka: "KafkaSettings", reason: str | None
) -> tuple[list["StoredDeadLetter"], "RedriveLog", set[str]]:
    """The dead letters (of one reason, or all), the redrive log, and the positions already redriven."""
    from events.deadletter import NoSuchTopic, read_dead_letters

    require_kafka(kafka.bootstrap_list)
    try:
        letters = [
            letter
            for letter in read_dead_letters(kafka.bootstrap_list, kafka.topic)
            if not reason or letter.reason == reason
        ]
    except NoSuchTopic as error:
        fail(ServiceError(f"{error} (CITIZEN_CONTEXT_KAFKA_TOPIC): nothing was ever dead-lettered from it"))
    log = _redrive_log()
    return letters, log, log.redriven([letter.position for letter in letters])


def _redrive_log() -> "RedriveLog":
    import redis

    from context.settings import RedisSettings, redis_client_options
    from context.store import RedriveLog
    from events.topics import topic_retention

    settings = RedisSettings()
    return RedriveLog(
        redis.Redis.from_url(str(settings.url), **redis_client_options()),
        prefix=settings.key_prefix,
        retention=topic_retention(),
    )


@main.command()
@click.option("--directory", default="docs/contract", show_default=True, type=click.Path(path_type=Path))
def contract(directory: Path) -> None:
    """Write the event contract documentation (pages, JSON Schemas, AsyncAPI) from the models."""
    from events.contract import write_contract

    written = write_contract(directory)
    click.echo(f"wrote {len(written)} files under {directory}")


def _database_problems() -> list[str]:
    """The rule that no settings class holds: outside development, the database is named (see
    `database_settings`)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        database_settings()
    except SettingsError as error:
        return [settings_problem(error)]
    except ValidationError:
        return []  # the database's or the environment's settings do not load: said with the classes
    return []


@main.command("settings")
def settings_command() -> None:
    """Print every setting (environment variable, default, meaning) as a Markdown table, then check the
    settings as this environment (and .env) would load them: each that does not load is named, status 2."""
    from ops.settings_doc import ALL_SETTINGS, misspelt_variables, settings_table

    click.echo(settings_table())
    # The table gives defaults; a value set here that every other command would refuse is said too, rather
    # than leave the defaults printed as if they held. Every one at once, each named, never its value.
    problems = [problem for settings_class in ALL_SETTINGS for problem in settings_problems(settings_class)]
    problems += _database_problems()
    # And a variable that no setting reads (misspelt): every command ignores it.
    problems += [f"{name} is no setting (misspelt?): it is ignored" for name in misspelt_variables()]
    for problem in problems:
        click.secho(f"error: {problem}", fg="red", err=True)
    if problems:
        sys.exit(2)
