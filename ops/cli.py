"""`citizen-context`: the one command that starts every process and tool."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import httpx

from ops.logging import configure_logging
from ops.processes import ServiceError
from ops.servers import LocalServer, local_servers

if TYPE_CHECKING:
    from context.store import ProjectionWriter


@click.group()
@click.option("--log-level", default="INFO", show_default=True, help="Log level of this process.")
def main(log_level: str) -> None:
    """Citizen Context: each citizen's recent interactions, live, for the agent handling their enquiry."""
    configure_logging(log_level.upper())


def _fail(error: ServiceError) -> NoReturn:
    click.secho(f"error: {error}", fg="red", err=True)
    sys.exit(1)


# --- local servers -------------------------------------------------------------------------------------


@main.group()
def services() -> None:
    """The local Redis and Kafka servers (loopback only, data under the data folder)."""


@services.command("up")
def services_up() -> None:
    """Install what is missing and start the servers that are not running (idempotent)."""
    try:
        _start_servers()
    except ServiceError as error:
        _fail(error)


@services.command("down")
def services_down() -> None:
    """Stop the servers citizen-context started, by their PID."""
    for server in reversed(local_servers()):
        click.echo(f"{server.name}: {'stopped' if server.down() else 'was not running'}")


@services.command("status")
def services_status() -> None:
    """Tell which servers run, where, and where their data is."""
    for server in local_servers():
        state = server.status()
        running = f"running (pid {state.pid})" if state.running else "stopped"
        click.echo(f"{state.name:6} {running:22} {state.address:26} data: {state.data_dir}")


@services.command("tools")
def services_tools() -> None:
    """Install the tools the tests use besides the servers (kcat, a second Kafka client)."""
    from ops.servers import ensure_command

    try:
        click.echo(f"kcat: {ensure_command('kcat', 'kcat')}")
    except ServiceError as error:
        _fail(error)


@services.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def services_run(command: tuple[str, ...]) -> None:
    """Start the servers, run COMMAND, then stop only the servers this call started."""
    try:
        with _servers_running():
            result = subprocess.run(list(command), check=False)
    except ServiceError as error:
        _fail(error)
    sys.exit(result.returncode)


def _start_servers() -> list[LocalServer]:
    started = []
    try:
        for server in local_servers():
            click.echo(
                f"{server.name}: starting…" if not server.status().running else f"{server.name}: running"
            )
            if server.up():
                started.append(server)
                click.echo(f"{server.name}: started at {server.status().address}")
    except ServiceError:
        for server in reversed(started):
            server.down()
        raise
    return started


@contextmanager
def _servers_running() -> Iterator[None]:
    started = _start_servers()
    try:
        yield
    finally:
        for server in reversed(started):
            server.down()
            click.echo(f"{server.name}: stopped")


# --- processes -----------------------------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Listen address (default: CITIZEN_CONTEXT_API_HOST).")
@click.option("--port", default=None, type=int, help="Listen port (default: CITIZEN_CONTEXT_API_PORT).")
@click.option("--migrate/--no-migrate", default=True, show_default=True, help="Apply SQL migrations first.")
def api(host: str | None, port: int | None, migrate: bool) -> None:
    """Run the API (uvicorn)."""
    import uvicorn

    from api.settings import ApiSettings
    from models.database import DatabaseSettings
    from models.database import migrate as apply_migrations

    settings = ApiSettings()
    if migrate:
        apply_migrations(DatabaseSettings())
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        log_level="warning",
        ws_ping_interval=20,
        timeout_graceful_shutdown=10,
    )


@main.command()
def consume() -> None:
    """Run the Kafka consumer that builds the projection in Redis."""
    from events.process import run_consumer_process

    run_consumer_process()


@main.group()
def db() -> None:
    """The SQL database."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply the migrations up to REVISION (default: the newest)."""
    from models.database import DatabaseSettings, migrate

    migrate(DatabaseSettings(), revision)
    click.echo(f"database at {revision}")


@main.command()
def demo() -> None:
    """Publish a few realistic interactions for a handful of citizens."""
    _publish_demo()


def _publish_demo() -> list[str]:
    from events.demo import DEMO_CITIZENS, demo_events
    from events.producer import create_producer, publish
    from events.settings import KafkaSettings

    kafka = KafkaSettings()
    producer = create_producer(kafka.bootstrap_list)
    try:
        events = demo_events()
        for event in events:
            publish(producer, kafka.topic, event)
        producer.flush(timeout=30)
    finally:
        producer.close()
    click.echo(f"published {len(events)} demo events to {kafka.topic}")
    return list(DEMO_CITIZENS)


def _writer() -> "ProjectionWriter":
    import redis

    from context.settings import RedisSettings, TimelineSettings, redis_client_options
    from context.store import ProjectionWriter

    settings = RedisSettings()
    client = redis.Redis.from_url(str(settings.url), **redis_client_options())
    return ProjectionWriter(client, prefix=settings.key_prefix, timeline=TimelineSettings())


@main.command()
@click.option(
    "--grace", default=2.0, show_default=True, help="Seconds to wait before deleting the old generation."
)
def rebuild(grace: float) -> None:
    """Rebuild the projection from Kafka into a new generation, then switch to it (repave)."""
    from context.settings import IdentitySettings
    from events.rebuild import rebuild as run_rebuild
    from events.settings import KafkaSettings

    kafka = KafkaSettings()
    writer = _writer()
    bar: list[Any] = []

    def start(total: int) -> None:
        click.echo(f"replaying {total} records of {kafka.topic} into a new generation")
        bar.append(click.progressbar(length=total, label="rebuild", file=sys.stderr).__enter__())

    try:
        report = run_rebuild(
            kafka=kafka,
            writer=writer,
            default_region=IdentitySettings().default_region,
            on_start=start,
            progress=lambda n: bar[0].update(n) if bar else None,
            grace_s=grace,
        )
    finally:
        if bar:
            bar[0].__exit__(None, None, None)
        writer.client.close()
    click.echo(
        f"serving epoch {report.epoch} (was {report.previous_epoch}): {report.records} records replayed in "
        f"{report.seconds:.1f}s ({report.records_per_s:,.0f}/s), {report.applied} changes, "
        f"{report.skipped} skipped as unusable, {report.keys_removed} old keys removed"
    )


@main.group()
def dlq() -> None:
    """The dead-letter topic: records the consumer could not use, and why."""


@dlq.command("list")
@click.option("--reason", default=None, help="Only records dead-lettered for this reason.")
def dlq_list(reason: str | None) -> None:
    """Show the dead-lettered records (position, reason, detail); their content is not printed."""
    from events.deadletter import dead_letter_topic, read_dead_letters
    from events.settings import KafkaSettings

    kafka = KafkaSettings()
    shown = 0
    for letter in read_dead_letters(kafka.bootstrap_list, kafka.topic):
        if reason and letter.reason != reason:
            continue
        shown += 1
        origin = f"{letter.record.topic}[{letter.record.partition}]@{letter.record.offset}"
        click.echo(
            f"{letter.dlq_partition}:{letter.dlq_offset}  {letter.dead_lettered_at}  from {origin}  "
            f"{letter.reason}: {letter.detail}"
        )
    click.echo(
        f"{shown} record(s) in {dead_letter_topic(kafka.topic)}"
        + (f" with reason {reason}" if reason else "")
    )


@dlq.command("redrive")
@click.option("--reason", default=None, help="Only records dead-lettered for this reason (default: all).")
def dlq_redrive(reason: str | None) -> None:
    """Publish dead-lettered records, unchanged, back to their topic (safe to repeat)."""
    from events.deadletter import read_dead_letters, redrive
    from events.producer import create_producer
    from events.settings import KafkaSettings

    kafka = KafkaSettings()
    letters = [
        letter
        for letter in read_dead_letters(kafka.bootstrap_list, kafka.topic)
        if not reason or letter.reason == reason
    ]
    producer = create_producer(kafka.bootstrap_list)
    try:
        count = redrive(producer, letters)
    finally:
        producer.close()
    click.echo(f"redrove {count} record(s)")


@main.command()
@click.option("--directory", default="docs/contract", show_default=True, type=click.Path(path_type=Path))
def contract(directory: Path) -> None:
    """Write the event contract documentation (pages, JSON Schemas, AsyncAPI) from the models."""
    from events.contract import write_contract

    written = write_contract(directory)
    click.echo(f"wrote {len(written)} files under {directory}")


@main.command("settings")
def settings_command() -> None:
    """Print every setting (environment variable, default, meaning) as a Markdown table."""
    from ops.settings_doc import settings_table

    click.echo(settings_table())


@main.command()
@click.option("--demo/--no-demo", "with_demo", default=True, show_default=True, help="Publish demo events.")
def dev(with_demo: bool) -> None:
    """Servers, API, consumer and a demo publisher together; Ctrl-C stops everything it started."""
    from api.settings import ApiSettings

    settings = ApiSettings()
    base_url = settings.public_url or f"http://{settings.host}:{settings.port}"
    children: list[subprocess.Popen[bytes]] = []
    stop_requested = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        with _servers_running():
            executable = [sys.executable, "-m", "ops.cli"]
            children.append(subprocess.Popen([*executable, "api"]))
            children.append(subprocess.Popen([*executable, "consume"]))
            _wait_ready(f"{base_url}/readyz", children)
            if with_demo:
                citizens = _publish_demo()
                _wait_for_context(f"{base_url}/v1/citizens/{citizens[0]}/context")
                ws_url = base_url.replace("http", "ws", 1)
                click.echo("")
                click.secho("Citizen Context is running.", bold=True)
                click.echo(f"  Context (REST):      {base_url}/v1/citizens/{citizens[0]}/context")
                click.echo(f"  Live stream (WS):    {ws_url}/v1/citizens/{citizens[0]}/stream")
                click.echo(f"  Other demo citizens: {', '.join(citizens[1:])}")
                click.echo(f"  API documentation:   {base_url}/docs")
                click.echo("Press Ctrl-C to stop.")
            while not stop_requested and all(child.poll() is None for child in children):
                time.sleep(0.5)
            for child in children:
                if not stop_requested and child.poll() is not None:
                    click.secho(f"a process exited with {child.returncode}; stopping", fg="red", err=True)
    except ServiceError as error:
        _fail(error)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


def _wait_ready(url: str, children: list[subprocess.Popen[bytes]], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise ServiceError("the API or the consumer exited while starting; see the messages above")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise ServiceError(f"{url} was not ready within {timeout_s:.0f}s")


def _wait_for_context(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = httpx.get(url, timeout=2)
        if response.status_code == 200 and response.json()["version"] > 0:
            return
        time.sleep(0.3)
    click.secho(f"the demo events have not reached {url} yet; is the consumer running?", fg="yellow")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
