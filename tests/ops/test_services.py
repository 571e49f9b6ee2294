"""`citizen-context services`: idempotent, honest about what runs, clear when it cannot start."""

import socket
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from pydantic import RedisDsn

from context.settings import RedisSettings
from context.store import PROJECTION_REDIS_CONFIG
from events.settings import KafkaSettings
from ops.cli import main
from ops.cli import services as services_cli
from ops.processes import ServiceError
from ops.servers import KafkaServer, RedisServer, ServerStatus, local_servers
from ops.settings import ServicesSettings
from tests.conftest import free_port


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

    def down(self) -> bool:
        return False


def test_servers_started_before_an_interrupted_start_are_stopped_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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
    finally:
        own.down()
