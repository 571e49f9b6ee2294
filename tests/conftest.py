"""Fixtures that connect to the servers the test command started; nothing here starts a server.

Each test isolates itself: its own Redis key prefix, its own Kafka topic and consumer group.
"""

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
import redis.asyncio as aioredis
import structlog
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from pydantic import RedisDsn

import ops.cli.root
from context.settings import RedisSettings, TimelineSettings
from events.deadletter import dead_letter_topic
from events.producer import create_producer
from events.settings import KafkaSettings
from events.topics import ensure_topics
from models.database import DatabaseSettings, migrate
from ops.logging import configure_logging
from ops.servers import RedisServer, postgres_url
from ops.settings import ServicesSettings

# Tests fire requests far faster than any agent; the rate-limit tests set their own limits. Project
# processes the tests start inherit this too.
os.environ.setdefault("CITIZEN_CONTEXT_SECURITY_AGENT_RATE", "100000/second")
os.environ.setdefault("CITIZEN_CONTEXT_SECURITY_KEY_RATE", "100000/second")

# The machines are shared and noisy: Hypothesis's timing checks would fail tests for the machine's load,
# not for the code. Correctness checks stay on.
hypothesis_settings.register_profile(
    "project", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
hypothesis_settings.load_profile("project")

# Several tests stop a step with Ctrl-C (SIGINT), which Python turns into KeyboardInterrupt only when the
# signal was not ignored as the process started: a test run started in the background by a
# non-interactive shell (`make test &`, a CI runner's script) inherits it ignored, and those tests failed
# there alone. Python's own handler, as an interactive run has it (children the tests start get it too).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--update-screenshots`: the desk's browser test rewrites docs/desk.png (the README shows it)."""
    parser.addoption(
        "--update-screenshots",
        action="store_true",
        help="write the desk's screenshot to docs/ (otherwise to the test's temporary folder)",
    )


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def key_prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(str(RedisSettings().url))
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_settings(key_prefix: str) -> RedisSettings:
    """Settings pointing at the test Redis, with this test's prefix."""
    return RedisSettings(key_prefix=key_prefix)


@pytest.fixture
def redis_client(redis_settings: RedisSettings) -> Iterator["redis.Redis"]:
    """A synchronous client of the test Redis."""
    client = redis.Redis.from_url(str(redis_settings.url), decode_responses=True)
    yield client
    client.close()


@pytest.fixture
async def async_redis(redis_settings: RedisSettings) -> AsyncIterator["aioredis.Redis"]:
    """An asyncio client of the test Redis."""
    client = aioredis.Redis.from_url(str(redis_settings.url), decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def timeline_settings() -> TimelineSettings:
    """The default timeline limits."""
    return TimelineSettings()


@pytest.fixture
def kafka_topic() -> Iterator[str]:
    """A Kafka topic of this test's own (3 partitions) and its dead-letter topic, deleted afterwards."""
    name = f"test.{uuid.uuid4().hex[:12]}"
    servers = KafkaSettings().bootstrap_list
    ensure_topics(KafkaSettings(topic=name, topic_partitions=3))
    yield name
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        admin.delete_topics([name, dead_letter_topic(name)])
    finally:
        admin.close()


@pytest.fixture
def producer() -> Iterator[KafkaProducer]:
    """The project's own Kafka producer (events/producer.py), closed afterwards."""
    kafka_producer = create_producer(KafkaSettings().bootstrap_list)
    yield kafka_producer
    kafka_producer.close()


@pytest.fixture
def migrated(sql_database: DatabaseSettings) -> DatabaseSettings:
    """`sql_database`, migrated: the project's tables, and nothing in them."""
    migrate(sql_database)
    return sql_database


@pytest.fixture
def database_settings(tmp_path: Path) -> DatabaseSettings:
    """A migrated SQLite database of this test's own (for tests where SQL is not the point)."""
    settings = DatabaseSettings(url=f"sqlite:///{tmp_path / 'test.db'}")
    migrate(settings)
    return settings


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseSettings]:
    """An empty database of this test's own, once on SQLite and once on the local PostgreSQL."""
    if request.param == "sqlite":
        yield DatabaseSettings(url=f"sqlite:///{tmp_path / 'test.db'}")
        return
    with _new_postgres_database() as settings:
        yield settings


@pytest.fixture
def postgres_database() -> Iterator[DatabaseSettings]:
    """An empty database of this test's own on the local PostgreSQL (what only PostgreSQL does)."""
    with _new_postgres_database() as settings:
        yield settings


@contextmanager
def _new_postgres_database() -> Iterator[DatabaseSettings]:
    services = ServicesSettings()
    if not services.with_postgres:
        pytest.fail("PostgreSQL is not running for this test run: run the tests with `make test`")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(
        postgres_url(services.postgres_port).replace("+psycopg", ""), autocommit=True
    ) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield DatabaseSettings(url=postgres_url(services.postgres_port, name))
    finally:
        with psycopg.connect(
            postgres_url(services.postgres_port).replace("+psycopg", ""), autocommit=True
        ) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@dataclass
class Process:
    """A project process started by a test (`citizen-context …`), stopped by its PID."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None)

    def start(self) -> "Process":
        """Start it (again)."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", *self.args],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        return self

    def stop(self, *, kill: bool = False) -> int:
        """SIGTERM (or SIGKILL) it and wait; its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.kill() if kill else self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # It ignored SIGTERM for 30 s: that is a failure to report, but never a process to leave behind.
            self.process.kill()
            self.process.wait(timeout=10)
            raise

    @property
    def alive(self) -> bool:
        """True while it runs."""
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """Everything it printed."""
        return self.log_path.read_text(errors="replace")


@dataclass
class Stack:
    """A consumer and an API process sharing this test's topic, group, Redis prefix and database."""

    env: dict[str, str]
    tmp_path: Path
    api_port: int
    health_port: int
    processes: list[Process] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        """The API's base URL."""
        return f"http://127.0.0.1:{self.api_port}"

    def consumer(self) -> Process:
        """Start a consumer process."""
        process = Process(["consume"], self.env, self.tmp_path / "consumer.log").start()
        self.processes.append(process)
        wait_until(
            lambda: _ready(f"http://127.0.0.1:{self.health_port}/readyz"),
            what="consumer ready",
            process=process,
        )
        return process

    def cli(self, *args: str) -> str:
        """Run `citizen-context ARGS` in the stack's environment; its output (it must succeed)."""
        result = subprocess.run(
            [sys.executable, "-m", "ops.cli", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def applied(self) -> float:
        """Events the stack's consumer has applied so far, from its metrics (which need no credentials)."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.health_port}/metrics", timeout=2).text
        except httpx.TransportError:
            return 0
        found = re.search(r"^citizen_context_events_applied_total (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0

    def api(self, port: int | None = None) -> Process:
        """Start an API process (on the stack's port, or another one for a second replica)."""
        port = port or self.api_port
        log = self.tmp_path / f"api-{port}.log"
        process = Process(["api", "--port", str(port)], self.env, log).start()
        self.processes.append(process)
        wait_until(lambda: _ready(f"http://127.0.0.1:{port}/readyz"), what="API ready", process=process)
        return process


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_until(
    condition: Callable[[], bool], *, what: str, timeout_s: float = 60, process: Process | None = None
) -> None:
    """Poll `condition` until it holds; fail with `what` (and the process's log) after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and not process.alive:
            pytest.fail(f"process exited while waiting for {what}:\n{process.log()[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}" + (f":\n{process.log()[-3000:]}" if process else ""))


@pytest.fixture
def stack(tmp_path: Path, key_prefix: str, kafka_topic: str) -> Iterator[Stack]:
    """Environment for real project processes, isolated to this test; they are stopped afterwards."""
    api_port, health_port = free_port(), free_port()
    env = {
        "CITIZEN_CONTEXT_REDIS_KEY_PREFIX": key_prefix,
        "CITIZEN_CONTEXT_KAFKA_TOPIC": kafka_topic,
        "CITIZEN_CONTEXT_KAFKA_GROUP_ID": f"group-{kafka_topic}",
        "CITIZEN_CONTEXT_KAFKA_POLL_TIMEOUT_MS": "100",
        # The broker's minimum: a killed consumer's partitions move to its successor within seconds.
        "CITIZEN_CONTEXT_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "CITIZEN_CONTEXT_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "CITIZEN_CONTEXT_CONSUMER_HEALTH_PORT": str(health_port),
        "CITIZEN_CONTEXT_DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}",
        "PYTHONUNBUFFERED": "1",
    }
    result = Stack(env=env, tmp_path=tmp_path, api_port=api_port, health_port=health_port)
    yield result
    for process in result.processes:
        if process.alive:
            process.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of this test's own, which the test may stop and start."""
    port = free_port()
    server = RedisServer(
        ServicesSettings(data_dir=tmp_path / "own"),
        RedisSettings(url=RedisDsn(f"redis://127.0.0.1:{port}/0")),
    )
    server.up()
    yield server
    server.down()


def topic_records(topic: str) -> list[Any]:
    """Every record a topic holds now, read from the beginning (no consumer group)."""
    consumer = KafkaConsumer(bootstrap_servers=KafkaSettings().bootstrap_list, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


@pytest.fixture(autouse=True)
def logging_as_found(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Logging as each test found it. A CLI command run in process (click's CliRunner) configures logging
    for the whole process, to the stderr of that moment: a later test's logs went there, out of its own
    capture, and a test reading them failed or passed by the order the tests ran in. Loggers are not
    cached meanwhile (a module's logger first used then would keep that stream for good)."""

    def configure_uncached(level: str = "INFO") -> None:
        configure_logging(level)
        structlog.configure(cache_logger_on_first_use=False)

    monkeypatch.setattr(ops.cli.root, "configure_logging", configure_uncached)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
