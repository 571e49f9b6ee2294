"""The processes: `citizen-context api`, `consume`, `dev`, `demo` and `db`."""

import signal
import subprocess
import sys
import time
from typing import Any

import click
import httpx
import structlog

from events.settings import is_loopback
from ops.cli.root import FiniteRange, database_settings, fail, main, require_kafka, warn_of_misspelt_variables
from ops.cli.services import servers_running
from ops.cli.simulate import MIN_SIMULATED_RATE
from ops.processes import ServiceError, http_url, reachable_at, refuse_busy_listen_port, uninterrupted

# How long `dev`'s simulated traffic runs: a working day's demo, bounded as every simulation is.
DEMO_TRAFFIC_S = 8 * 3600

log = structlog.get_logger("api")


@main.command()
@click.option("--host", default=None, help="Listen address (default: CITIZEN_CONTEXT_API_HOST).")
@click.option(
    "--port",
    default=None,
    type=click.IntRange(0, 65535),
    help="Listen port (default: CITIZEN_CONTEXT_API_PORT).",
)
@click.option("--migrate/--no-migrate", default=True, show_default=True, help="Apply SQL migrations first.")
def api(host: str | None, port: int | None, migrate: bool) -> None:
    """Run the API (uvicorn); on SIGTERM, streams are told to reconnect before the process exits."""
    import uvicorn

    from api.app import create_app
    from api.http_protocol import problem_protocol, problem_websocket_protocol
    from api.lifecycle import Lifecycle
    from api.security.settings import SecuritySettings
    from api.settings import ApiSettings
    from models.database import migrate as apply_migrations

    warn_of_misspelt_variables()
    settings = ApiSettings()
    security = SecuritySettings()
    address = host or settings.host
    if security.development and not is_loopback(address):
        # The development signing key is public (it is in this repository): anyone could sign in as admin.
        fail(
            ServiceError(
                f"development security settings on {address}: listen on 127.0.0.1, or set "
                "CITIZEN_CONTEXT_SECURITY_ENVIRONMENT=production with real keys"
            )
        )
    listen_port = port if port is not None else settings.port
    try:
        refuse_busy_listen_port("the API", address, listen_port, "CITIZEN_CONTEXT_API_PORT (or --port)")
    except ServiceError as error:
        fail(error)
    database = database_settings()
    if migrate:
        apply_migrations(database)
    app = create_app(api=settings, database=database)
    lifecycle: Lifecycle = app.state.lifecycle

    class DrainingServer(uvicorn.Server):
        """Uvicorn, but its shutdown first drains the streams (a "reconnect" message, then a close); and its
        start says where it listens, uvicorn's own line being below the log level it is given."""

        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets)
            if not self.started:
                return  # it could not start (uvicorn has said why): there is no address to give
            listening = [sock.getsockname() for server in self.servers for sock in server.sockets]
            log.info("api started", listening=" ".join(http_url(name[0], name[1]) for name in listening))

        async def shutdown(self, sockets: list[Any] | None = None) -> None:
            # Stop accepting first (new streams would only be turned away), then drain, then close.
            for server in self.servers:
                server.close()
            if not self.force_exit:
                await lifecycle.drain(timeout_s=settings.shutdown_drain_s)
            await super().shutdown(sockets)

    config = uvicorn.Config(
        app,
        host=address,
        port=listen_port,
        log_level="warning",
        # Uvicorn's own handlers would write plain text among the key=value lines: its loggers go to the
        # process's handler instead (ops/logging.py).
        log_config=None,
        # uvicorn's httptools protocol, answering a request it cannot parse with problem details.
        http=problem_protocol(hsts=security.hsts),
        # uvicorn's websockets protocol, answering a handshake it refuses with problem details too.
        ws=problem_websocket_protocol(hsts=security.hsts),
        # The address in audit records is the agent's, as told by a trusted proxy, never by anyone else.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # Protocol pings: a client that stops answering is dropped within two intervals.
        ws_ping_interval=settings.stream_heartbeat_s,
        ws_ping_timeout=settings.stream_heartbeat_s,
        # A stream reads nothing its client sends: a message over the bodies' limit closes it (1009).
        ws_max_size=security.max_body_bytes,
        timeout_graceful_shutdown=10,
    )
    from events.heap import (
        API_FULL_COLLECTION_EVERY,
        API_MIDDLE_COLLECTION_EVERY,
        API_YOUNG_COLLECTION_EVERY,
        prefer_prompt_switches,
        settle_heap,
    )

    settle_heap(
        full_collection_every=API_FULL_COLLECTION_EVERY,
        young_every=API_YOUNG_COLLECTION_EVERY,
        middle_every=API_MIDDLE_COLLECTION_EVERY,
    )
    prefer_prompt_switches()
    DrainingServer(config).run()


@main.command()
def consume() -> None:
    """Run the Kafka consumer that builds the projection in Redis."""
    from events.process import run_consumer_process

    warn_of_misspelt_variables()
    try:
        _refuse_busy_consumer_port()
    except ServiceError as error:
        fail(error)
    run_consumer_process()


def _refuse_busy_consumer_port() -> None:
    from events.settings import ConsumerSettings

    settings = ConsumerSettings()
    refuse_busy_listen_port(
        "the consumer's health endpoint",
        settings.health_host,
        settings.health_port,
        "CITIZEN_CONTEXT_CONSUMER_HEALTH_PORT",
    )


@main.group()
def db() -> None:
    """The SQL database."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply the migrations up to REVISION (default: the newest)."""
    from alembic.util import CommandError

    from models.database import migrate

    try:
        migrate(database_settings(), revision)
    except CommandError as error:
        fail(ServiceError(f"cannot upgrade the database to {revision!r}: {error}"))
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
    require_kafka(kafka.bootstrap_list)
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


def _none_or_simulated(rate: float) -> float:
    """A --simulate-rate that `simulate --rate` takes, or 0: one in between would be announced as traffic
    that `simulate` then refuses to send."""
    if 0 < rate < MIN_SIMULATED_RATE:
        raise click.BadParameter(f"{rate:g} is neither 0 (none) nor at least {MIN_SIMULATED_RATE:g}.")
    return rate


@main.command()
@click.option("--demo/--no-demo", "with_demo", default=True, show_default=True, help="Publish demo events.")
@click.option(
    "--simulate-rate",
    default=1.0,
    show_default=True,
    type=FiniteRange(min=0, max=100_000),
    callback=lambda _context, _parameter, rate: _none_or_simulated(rate),
    help="Simulated interactions per second after the demo events (0: none; else at least 0.01).",
)
def dev(with_demo: bool, simulate_rate: float) -> None:
    """Servers, API, consumer, demo events and simulated traffic together; Ctrl-C stops everything (start-up
    included). Exits 1 when the API or the consumer stops by itself."""
    from api.settings import ApiSettings

    settings = ApiSettings()
    # Links are printed with the public address; readiness is asked of the API itself, on its own port: a
    # proxy that the public address names need not run in development.
    base_url = settings.public_url or http_url(settings.host, settings.port)
    local_url = http_url(reachable_at(settings.host), settings.port)
    children: list[subprocess.Popen[bytes]] = []
    helpers: list[subprocess.Popen[bytes]] = []
    crashed: list[subprocess.Popen[bytes]] = []

    def request_stop(_signum: int, _frame: object) -> None:
        # Whatever runs stops now, start-up included (installing and starting the servers can take minutes),
        # and everything started so far is stopped on the way out. Once only: a second Ctrl-C must not cut
        # that short.
        _ignore_stop_signals()
        raise _StopRequested

    try:
        # Another instance answering on these ports would pass for this one's API and consumer.
        refuse_busy_listen_port("the API", settings.host, settings.port, "CITIZEN_CONTEXT_API_PORT")
        _refuse_busy_consumer_port()
    except ServiceError as error:
        fail(error)
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        with servers_running():
            executable = [sys.executable, "-m", "ops.cli"]
            try:
                # Their own sessions: a Ctrl-C in the terminal reaches only this process, which stops them in
                # order (the API first drains its streams).
                _start_child([*executable, "api"], children)
                _start_child([*executable, "consume"], children)
                _wait_ready(f"{local_url}/readyz", children)
                demo, traffic = (
                    _start_demo(executable, base_url, local_url, simulate_rate, helpers)
                    if with_demo
                    else ([], [])
                )
                _announce(base_url, demo, traffic)
                while all(child.poll() is None for child in children):
                    time.sleep(0.5)
                crashed += [child for child in children if child.poll() is not None]
                for child in crashed:
                    name = "the API" if child is children[0] else "the consumer"
                    click.secho(f"{name} exited with {child.returncode}; stopping", fg="red", err=True)
            finally:
                # The simulator, the API and the consumer go first, while the servers they use still run.
                _ignore_stop_signals()
                _stop_children([*helpers, *children])
    except _StopRequested:
        pass  # asked to stop: everything started has been stopped on the way here
    except ServiceError as error:
        fail(error)
    finally:
        _ignore_stop_signals()
        _stop_children([*helpers, *children])
    if crashed:
        sys.exit(1)


def _start_child(command: list[str], children: list[subprocess.Popen[bytes]], **options: Any) -> None:
    """Start a process in a session of its own and list it among `children`: both, or neither, whenever a
    Ctrl-C comes (a process started and not listed would never be stopped)."""
    with uninterrupted():
        children.append(subprocess.Popen(command, start_new_session=True, **options))


class _StopRequested(BaseException):
    """Ctrl-C or SIGTERM reached `dev`: a BaseException, as KeyboardInterrupt, so no handler takes it for
    an error of its own."""


def _ignore_stop_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_demo(
    executable: list[str],
    base_url: str,
    local_url: str,
    simulate_rate: float,
    helpers: list[subprocess.Popen[bytes]],
) -> tuple[list[str], list[str]]:
    """Publish the demo events, wait for them to be applied and start the simulated traffic; the lines
    that tell how to try the demo, and the one that describes the traffic (none without it)."""
    from api.security.settings import SecuritySettings
    from api.security.tokens import mint_development_token
    from models.tables import AgentRole

    citizens = _publish_demo()
    security = SecuritySettings()
    # A supervisor with a stated reason may read any citizen (and the read is audited).
    supervisor = mint_development_token(
        security, agent_id="S-dev", roles=[AgentRole.supervisor], name="Development supervisor"
    )
    _wait_for_context(
        f"{local_url}/v1/citizens/{citizens[0]}/context",
        headers={"Authorization": f"Bearer {supervisor}", "X-Access-Reason": "make run: demo check"},
    )
    if simulate_rate > 0:
        # Live traffic for a desk to watch: the demo citizens get half of it. Bounded, and quiet
        # (no progress bar): it shares the terminal with the other processes.
        simulate = [*executable, "simulate", "--citizens", "100", "--rate", str(simulate_rate)]
        simulate += ["--duration", str(DEMO_TRAFFIC_S), "--no-progress"]
        simulate += [arg for citizen in citizens for arg in ("--citizen", citizen)]
        _start_child(simulate, helpers, stdout=subprocess.DEVNULL)
    token = mint_development_token(
        security, agent_id="A-dev", roles=[AgentRole.agent], name="Development agent"
    )
    supervisor_header = '-H "Authorization: Bearer $(.venv/bin/citizen-context token --role supervisor)"'
    reason_header = "-H 'X-Access-Reason: demo'"
    demo = [
        f"  Signed in as A-dev:  {base_url}/desk/#token={token}",
        "  Try phone number:    07700 900123 (C-100234), or citizen id C-100587, C-200311",
        f"  Context (REST):      curl {supervisor_header} {reason_header} "
        f"{base_url}/v1/citizens/{citizens[0]}/context",
    ]
    return demo, [traffic_announcement(simulate_rate)] if simulate_rate > 0 else []


def traffic_announcement(rate: float) -> str:
    """The line of `dev`'s announcement about its simulated traffic (the README shows it)."""
    return (
        f"  Simulated traffic:   {rate:g} a second for {DEMO_TRAFFIC_S // 3600} hours, half of it for the "
        "demo citizens, the rest for 100 others (citizen-context simulate)"
    )


def _announce(base_url: str, demo: list[str], traffic: list[str]) -> None:
    """Say that everything runs, and where (with the demo's and the traffic's lines, when there are any)."""
    click.echo("")
    click.secho("Citizen Context is running.", bold=True)
    click.echo(f"  Agent desk:          {base_url}/desk/")
    for line in demo:
        click.echo(line)
    click.echo(f"  API documentation:   {base_url}/docs")
    for line in traffic:
        click.echo(line)
    click.echo("Press Ctrl-C to stop.")


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
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


def _wait_for_context(url: str, *, headers: dict[str, str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, headers=headers, timeout=2)
            if response.status_code == 200 and response.json()["version"] > 0:
                return
        except httpx.TransportError:
            pass  # the API went away: the loop that follows start-up says so, and stops
        time.sleep(0.3)
    click.secho(f"the demo events have not reached {url} yet; is the consumer running?", fg="yellow")
