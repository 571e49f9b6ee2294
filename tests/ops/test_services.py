"""`citizen-context services`: idempotent, honest about what runs, clear when it cannot start."""

import contextlib
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from kafka.errors import KafkaError
from pydantic import RedisDsn

from context.settings import RedisSettings
from context.store import PROJECTION_REDIS_CONFIG
from events.deadletter import dead_letter_topic
from events.settings import KafkaSettings
from events.topics import admin_client
from ops.cli import main
from ops.cli import services as services_cli
from ops.processes import ServiceError
from ops.servers import KafkaServer, RedisServer, ServerStatus, local_servers
from ops.settings import ServicesSettings
from tests.conftest import free_port, wait_until


def test_status_tells_what_runs_where() -> None:
    result = CliRunner().invoke(main, ["services", "status"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("redis")
    assert "running (pid" in lines[0]
    assert "redis://127.0.0.1:" in lines[0]
    assert lines[1].startswith("kafka")
    assert "running (pid" in lines[1]


def test_up_twice_is_fine_and_starts_nothing_new() -> None:
    before = [server.status().pid for server in local_servers()]
    result = CliRunner().invoke(main, ["services", "up"])
    assert result.exit_code == 0, result.output
    assert "redis: running" in result.output
    assert "kafka: running" in result.output
    assert [server.status().pid for server in local_servers()] == before


def test_the_local_redis_gets_the_projections_compact_encodings() -> None:
    client = redis.Redis.from_url(str(RedisSettings().url), decode_responses=True)
    try:
        assert {
            name: client.config_get(name)[name] for name in PROJECTION_REDIS_CONFIG
        } == PROJECTION_REDIS_CONFIG
    finally:
        client.close()


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = RedisServer(
            ServicesSettings(data_dir=tmp_path), RedisSettings(url=RedisDsn(f"redis://127.0.0.1:{port}/0"))
        )
        with pytest.raises(ServiceError, match=f"port {port} is taken"):
            server.up()
    assert not server.status().running


def test_the_cli_reports_a_taken_port_without_a_stack_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        monkeypatch.setenv("CITIZEN_CONTEXT_REDIS_URL", f"redis://127.0.0.1:{squatter.getsockname()[1]}/0")
        monkeypatch.setenv("CITIZEN_CONTEXT_SERVICES_DATA_DIR", str(tmp_path))
        result = CliRunner().invoke(main, ["services", "up"])
    assert result.exit_code == 1
    assert "error: port" in result.output
    assert "Traceback" not in result.output


def test_servers_elsewhere_than_loopback_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="loopback"):
        KafkaServer(
            ServicesSettings(data_dir=tmp_path), KafkaSettings(bootstrap_servers="kafka.example.org:9092")
        )


class _InterruptedWhileStarting:
    """A server whose start is interrupted (Ctrl-C, or SIGTERM in the bench) while it comes up."""

    name = "interrupted"

    def status(self) -> ServerStatus:
        return ServerStatus(name=self.name, address="nowhere", pid=None, data_dir=Path("nowhere"))

    def up(self) -> bool:
        raise KeyboardInterrupt

    def down(self, *, only: int | None = None) -> bool:
        return False


def test_servers_started_before_an_interrupted_start_are_stopped_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A real Redis of this test's own, not running yet: the start (as `citizen-context bench` and the
    # other commands that need the servers make it) starts it, then is interrupted at the next server.
    own = RedisServer(
        ServicesSettings(data_dir=tmp_path / "own"),
        RedisSettings(url=RedisDsn(f"redis://127.0.0.1:{free_port()}/0")),
    )
    monkeypatch.setattr(services_cli, "local_servers", lambda: [own, _InterruptedWhileStarting()])
    try:
        with pytest.raises(KeyboardInterrupt):
            services_cli.start_servers()
        assert not own.status().running  # started, then stopped again: nothing outlives the command
        # Said, as a stop after start-up is: the output ended at "interrupted: starting…".
        assert capsys.readouterr().out.splitlines()[-1] == "redis: stopped"
    finally:
        own.down()


def test_a_server_started_again_by_another_command_is_left_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `make run` started Redis; it was stopped by hand and `services up` started another: that one is not
    # `make run`'s to stop when it ends (it went by the PID file, whoever had written it since).
    own = RedisServer(
        ServicesSettings(data_dir=tmp_path / "own"),
        RedisSettings(url=RedisDsn(f"redis://127.0.0.1:{free_port()}/0")),
    )
    monkeypatch.setattr(services_cli, "local_servers", lambda: [own])
    try:
        with services_cli.servers_running():
            first = own.status().pid
            assert first is not None
            assert own.down()  # stopped by hand
            assert own.up()  # and started again by another command
            again = own.status().pid
            assert again not in (None, first)
        assert own.status().pid == again
    finally:
        own.down()


CLI = [sys.executable, "-m", "ops.cli"]


def test_services_run_passes_sigterm_on_and_ends_its_command(tmp_path: Path) -> None:
    # make passes its own SIGTERM on to `services run` (a cancelled `make test`, a CI job's time limit):
    # it must end the command (and then the servers it started) rather than die and leave them running.
    # The servers run already here, so this call starts and stops none.
    started = tmp_path / "pid"
    command = f"import os, time; open({str(started)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    runner = subprocess.Popen(
        [*CLI, "services", "run", "--", sys.executable, "-c", command],
        start_new_session=True,  # a signal to this test's group must not reach it
    )
    try:
        wait_until(lambda: started.exists() and started.read_text() != "", what="the command started")
        child = int(started.read_text())
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 130
        wait_until(lambda: not Path(f"/proc/{child}").exists(), what="the command ended", timeout_s=10)
    finally:
        if runner.poll() is None:
            runner.kill()


def test_services_run_names_a_command_that_does_not_exist() -> None:
    result = subprocess.run(
        [*CLI, "services", "run", "--", "no-such-command-here"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 127
    assert "error: no such command: no-such-command-here" in result.stderr
    assert "Traceback" not in result.stderr


def test_settings_errors_name_their_variable_and_a_rate_is_judged_with_the_settings() -> None:
    port = CliRunner().invoke(main, ["api"], env={"CITIZEN_CONTEXT_API_PORT": "70000"})
    assert port.exit_code == 2
    assert "CITIZEN_CONTEXT_API_PORT: Input should be less than or equal to 65535" in port.output
    rate = CliRunner().invoke(main, ["api"], env={"CITIZEN_CONTEXT_SECURITY_AGENT_RATE": "20/sec"})
    assert rate.exit_code == 2
    assert "CITIZEN_CONTEXT_SECURITY_AGENT_RATE: Value error, not a rate: '20/sec'" in rate.output
    grace = CliRunner().invoke(main, ["rebuild", "--grace", "-1"])
    assert grace.exit_code == 2
    assert "-1" in grace.output


def test_status_reports_a_server_set_elsewhere_and_still_the_others() -> None:
    # Redis run by someone else (a managed service): status says so, and goes on to Kafka and PostgreSQL
    # (before, it failed with a traceback, and `services down` stopped none of them).
    result = CliRunner().invoke(
        main, ["services", "status"], env={"CITIZEN_CONTEXT_REDIS_URL": "redis://redis.internal:6379/0"}
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("redis    not run here: CITIZEN_CONTEXT_REDIS_URL points at redis.internal")
    assert [line.split()[0] for line in lines] == ["redis", "kafka", "postgres"]
    nowhere = CliRunner().invoke(
        main, ["services", "status"], env={"CITIZEN_CONTEXT_KAFKA_BOOTSTRAP_SERVERS": " "}
    )
    assert nowhere.exit_code == 2
    assert (
        "CITIZEN_CONTEXT_KAFKA_BOOTSTRAP_SERVERS: Value error, name at least one bootstrap server"
        in nowhere.output
    )


@pytest.mark.parametrize(
    "arguments",
    [
        ["rebuild", "--grace", "nan"],
        ["rebuild", "--grace", "inf"],
        ["rebuild", "--grace", "1e308"],
        ["simulate", "--duration", "nan"],
        ["simulate", "--duration", "inf"],
        ["simulate", "--rate", "nan"],
        ["simulate", "--rate", "1e308"],
        ["dev", "--simulate-rate", "nan"],
        # Below what `simulate` sends, yet not 0: announced as traffic that never came.
        ["dev", "--simulate-rate", "0.001"],
        ["soak", "--seconds", "nan"],
    ],
)
def test_a_number_that_is_not_one_or_out_of_all_reason_is_a_usage_error(arguments: list[str]) -> None:
    # `--grace nan` passed click's range, and failed the rebuild after its switch with a traceback,
    # leaving the replaced generation behind; `simulate --duration inf` failed with a traceback.
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{arguments[1]}'" in result.output


def test_up_with_the_servers_running_creates_the_topics_its_settings_name() -> None:
    # "kafka: running", and the topic named by CITIZEN_CONTEXT_KAFKA_TOPIC was not made, though the README
    # (and simulate's hint, for a topic that does not exist) says `services up` makes it.
    topic = f"test.up.{uuid.uuid4().hex[:8]}"
    admin = admin_client(KafkaSettings().bootstrap_list)
    try:
        result = CliRunner().invoke(main, ["services", "up"], env={"CITIZEN_CONTEXT_KAFKA_TOPIC": topic})
        assert result.exit_code == 0, result.output
        assert "kafka: running" in result.output
        assert {topic, dead_letter_topic(topic)} <= set(admin.list_topics())
    finally:
        with contextlib.suppress(KafkaError):
            admin.delete_topics([topic, dead_letter_topic(topic)])
        admin.close()


def test_redis_listens_on_the_loopback_address_its_url_names(tmp_path: Path) -> None:
    # `::1` once started a Redis on 127.0.0.1, where the API and the consumer, reading the same URL, did not
    # look for it.
    url = f"redis://[::1]:{free_port()}/0"
    server = RedisServer(ServicesSettings(data_dir=tmp_path), RedisSettings(url=RedisDsn(url)))
    try:
        assert server.up()
        assert server.status().address == url.removesuffix("/0")
        assert redis.Redis.from_url(url, socket_timeout=2).ping()
    finally:
        server.down()


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://localhost:6390/0", "redis://127.0.0.1:6390"),
        ("redis://127.0.0.2:6390/0", "redis://127.0.0.2:6390"),
        ("redis://[::1]:6390/0", "redis://[::1]:6390"),
    ],
)
def test_any_loopback_address_is_taken_as_it_is_named(tmp_path: Path, url: str, address: str) -> None:
    server = RedisServer(ServicesSettings(data_dir=tmp_path), RedisSettings(url=RedisDsn(url)))
    assert server.status().address == address


def test_kafka_on_ipv6_loopback_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match=r"points at ::1; `services` runs Kafka on an IPv4 loopback"):
        KafkaServer(ServicesSettings(data_dir=tmp_path), KafkaSettings(bootstrap_servers="[::1]:9092"))
