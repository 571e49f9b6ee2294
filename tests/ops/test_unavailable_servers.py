"""One-shot commands whose server cannot be reached, or whose topic does not exist, say so in a line,
naming the setting, and exit 1."""

import sqlite3
import uuid
from pathlib import Path

import kafka.errors
import pytest
import redis.exceptions
import sqlalchemy.exc
from click.testing import CliRunner
from kafka.admin import KafkaAdminClient, NewTopic

from events.settings import KafkaSettings
from models.database import DatabaseLocationError
from ops.cli import main
from ops.cli.root import unavailable_server
from tests.conftest import free_port


@pytest.mark.parametrize(
    "command", [["demo"], ["rebuild"], ["dlq", "list"], ["dlq", "redrive"], ["simulate", "--count", "1"]]
)
def test_commands_that_need_kafka_say_at_once_that_it_cannot_be_reached(command: list[str]) -> None:
    closed = f"127.0.0.1:{free_port()}"
    result = CliRunner().invoke(main, command, env={"CITIZEN_CONTEXT_KAFKA_BOOTSTRAP_SERVERS": closed})
    assert result.exit_code == 1, result.output
    assert f"error: Kafka cannot be reached at {closed} (CITIZEN_CONTEXT_KAFKA_BOOTSTRAP_SERVERS)" in (
        result.output
    )


@pytest.mark.parametrize("command", [["keys", "list"], ["db", "upgrade"]])
def test_commands_that_need_the_database_say_it_is_unavailable_without_its_password(
    command: list[str],
) -> None:
    url = f"postgresql+psycopg://agent:s3cret-pw@127.0.0.1:{free_port()}/nowhere"
    result = CliRunner().invoke(main, command, env={"CITIZEN_CONTEXT_DATABASE_URL": url})
    assert result.exit_code == 1, result.output
    assert "error: the database is unavailable (CITIZEN_CONTEXT_DATABASE_URL): connection failed" in (
        result.output
    )
    assert "s3cret-pw" not in result.output


def test_a_sqlite_database_whose_folder_cannot_be_made_is_named(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    url = f"sqlite:///{tmp_path / 'a-file' / 'db.sqlite'}"
    result = CliRunner().invoke(main, ["keys", "list"], env={"CITIZEN_CONTEXT_DATABASE_URL": url})
    assert result.exit_code == 1, result.output
    assert f"error: cannot create the SQLite database's folder {tmp_path / 'a-file'}" in result.output


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            redis.exceptions.ConnectionError("Error 111 connecting"),
            "Redis is unavailable (CITIZEN_CONTEXT_REDIS_URL)",
        ),
        (redis.exceptions.TimeoutError("Timeout connecting"), "Redis is unavailable"),
        (redis.exceptions.ReadOnlyError("READONLY replica"), "Redis is unavailable"),
        (
            kafka.errors.KafkaTimeoutError("Unable to bootstrap"),
            "Kafka failed (CITIZEN_CONTEXT_KAFKA_BOOTSTRAP_SERVERS): KafkaTimeoutError",
        ),
        (
            sqlalchemy.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked")),
            "the database is unavailable (CITIZEN_CONTEXT_DATABASE_URL): database is locked",
        ),
        (
            sqlalchemy.exc.OperationalError(
                "SELECT 1", {}, Exception("server closed the connection"), connection_invalidated=True
            ),
            "the database is unavailable (CITIZEN_CONTEXT_DATABASE_URL): server closed the connection",
        ),
        (
            DatabaseLocationError("cannot create the SQLite database's folder x"),
            "(CITIZEN_CONTEXT_DATABASE_URL)",
        ),
    ],
)
def test_unreachable_servers_are_told_from_other_errors(error: Exception, said: str) -> None:
    message = unavailable_server(error)
    assert message is not None
    assert said in message


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        redis.exceptions.ResponseError("WRONGTYPE"),
        sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key")),
        # A migration's own failure, not the database's absence: it keeps its traceback.
        sqlalchemy.exc.OperationalError(
            "CREATE", {}, sqlite3.OperationalError("table agents already exists")
        ),
    ],
)
def test_other_errors_are_left_to_raise(error: Exception) -> None:
    assert unavailable_server(error) is None


def test_a_rebuild_says_at_once_that_redis_cannot_be_reached() -> None:
    # Kafka answers (the test run's broker): the replay would otherwise retry each write for ever.
    closed = f"redis://127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(main, ["rebuild"], env={"CITIZEN_CONTEXT_REDIS_URL": closed})
    assert result.exit_code == 1, result.output
    assert "error: Redis is unavailable (CITIZEN_CONTEXT_REDIS_URL)" in result.output
    assert "replaying" not in result.output


def test_a_rebuild_from_a_topic_that_does_not_exist_says_so_and_changes_nothing() -> None:
    topic = f"test.missing.{uuid.uuid4().hex[:12]}"
    result = CliRunner().invoke(main, ["rebuild"], env={"CITIZEN_CONTEXT_KAFKA_TOPIC": topic})
    assert result.exit_code == 1, result.output
    assert (
        f"error: the topic '{topic}' does not exist: there is nothing to rebuild the projection from "
        "(CITIZEN_CONTEXT_KAFKA_TOPIC); the projection served is unchanged"
    ) in result.output
    assert "replaying" not in result.output


@pytest.mark.parametrize("command", ["list", "redrive"])
def test_the_dead_letters_of_a_topic_that_does_not_exist_are_refused_not_counted_as_none(
    command: str,
) -> None:
    # A mistyped topic name said "0 records", as if nothing had been dead-lettered.
    topic = f"test.missing.{uuid.uuid4().hex[:12]}"
    result = CliRunner().invoke(main, ["dlq", command], env={"CITIZEN_CONTEXT_KAFKA_TOPIC": topic})
    assert result.exit_code == 1, result.output
    assert (
        f"error: the topic '{topic}' does not exist, nor its dead-letter topic '{topic}.dlq' "
        "(CITIZEN_CONTEXT_KAFKA_TOPIC): nothing was ever dead-lettered from it"
    ) in result.output
    assert "records" not in result.output


@pytest.mark.parametrize("dead_letter_topic", [True, False])
def test_a_topic_with_no_dead_letters_lists_none(dead_letter_topic: bool) -> None:
    # Its dead-letter topic made with it (as the consumer and `services up` make them), or not yet.
    topic = f"test.{uuid.uuid4().hex[:12]}"
    names = [topic, f"{topic}.dlq"] if dead_letter_topic else [topic]
    admin = KafkaAdminClient(bootstrap_servers=KafkaSettings().bootstrap_list)
    try:
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1) for name in names])
        result = CliRunner().invoke(main, ["dlq", "list"], env={"CITIZEN_CONTEXT_KAFKA_TOPIC": topic})
    finally:
        admin.delete_topics(names)
        admin.close()
    assert result.exit_code == 0, result.output
    assert f"0 records in {topic}.dlq, 0 pending" in result.output


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("foo://agent:s3cret-pw@db/x", "the database must be SQLite or PostgreSQL, not 'foo'"),
        ("not a url s3cret-pw", "not a database URL; for example postgresql+psycopg://"),
        ("postgresql+pg8000://agent:s3cret-pw@db/x", "no driver 'pg8000' is installed for postgresql"),
    ],
)
@pytest.mark.parametrize("command", [["db", "upgrade"], ["keys", "list"], ["api", "--no-migrate"]])
def test_a_database_url_the_project_cannot_use_is_a_settings_error(
    url: str, message: str, command: list[str]
) -> None:
    # Before, each command failed with SQLAlchemy's traceback when it first opened the database.
    result = CliRunner().invoke(main, command, env={"CITIZEN_CONTEXT_DATABASE_URL": url})
    assert result.exit_code == 2, result.output
    assert f"CITIZEN_CONTEXT_DATABASE_URL: Value error, {message}" in result.output
    assert "s3cret-pw" not in result.output
