"""The local Redis and Kafka servers: installed when missing, started on loopback, stopped by PID."""

import base64
import os
import pwd
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import redis
from kafka.errors import KafkaError

from context.settings import RedisSettings
from context.store import PROJECTION_REDIS_CONFIG
from events.settings import KafkaSettings, is_loopback
from events.topics import admin_client, ensure_topics
from ops.processes import PidFile, ServiceError, host_port, port_open, spawn, tail
from ops.settings import ServicesSettings


@dataclass(frozen=True)
class ServerStatus:
    """What `services status` prints for one server."""

    name: str
    address: str
    pid: int | None
    data_dir: Path

    @property
    def running(self) -> bool:
        """True when our process runs."""
        return self.pid is not None


class LocalServer(Protocol):
    """A server the CLI can start and stop."""

    name: str

    def status(self) -> ServerStatus: ...

    def up(self) -> bool: ...

    def down(self, *, only: int | None = None) -> bool:
        """Stop the server if it runs (`only`: if its PID is that one); True if it was stopped."""
        ...


def local_servers(services: ServicesSettings | None = None, *, every: bool = False) -> list[LocalServer]:
    """The servers `services up` starts, in start order (`every`: PostgreSQL too, to report or stop it)."""
    services = services or ServicesSettings()
    servers: list[LocalServer] = [
        RedisServer(services, RedisSettings()),
        KafkaServer(services, KafkaSettings()),
    ]
    if services.with_postgres or every:
        servers.append(PostgresServer(services))
    return servers


# A server by its name, or why its settings name no server this machine runs.
Judged = tuple[str, "LocalServer | ServiceError"]


def judged_servers(services: ServicesSettings | None = None) -> list[Judged]:
    """Every local server, PostgreSQL included (`services status` and `down`), each built on its own: one
    whose settings name no server on this machine (Redis elsewhere, say) is reported as such, and the others
    are still seen, and stopped."""
    services = services or ServicesSettings()
    makers: list[tuple[str, Callable[[], LocalServer]]] = [
        ("redis", lambda: RedisServer(services, RedisSettings())),
        ("kafka", lambda: KafkaServer(services, KafkaSettings())),
        ("postgres", lambda: PostgresServer(services)),
    ]
    judged: list[Judged] = []
    for name, make in makers:
        try:
            judged.append((name, make()))
        except ServiceError as error:
            judged.append((name, error))
    return judged


def ensure_command(command: str, debian_package: str) -> str:
    """The path of `command`, installing its Debian package first when it is missing and we may."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServiceError(
            f"{command} is not installed; install it with: sudo apt-get install -y {debian_package}"
        )
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", debian_package]):
        result = subprocess.run(step, env=environment, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceError(
                f"could not install {debian_package} ({' '.join(step)}):\n{result.stderr[-2000:]}"
            )
    found = shutil.which(command)
    if not found:
        raise ServiceError(f"{debian_package} was installed but {command} is still not on PATH")
    return found


def refuse_taken_port(host: str, port: int, setting: str) -> None:
    """Raise a clear error when another program already listens where a server of ours would."""
    if port_open(host, port):
        raise ServiceError(
            f"port {port} is taken by a process citizen-context did not start; stop it or set {setting} "
            "to a free port"
        )


def _loopback_address(host: str | None, port: int | None, setting: str) -> tuple[str, int]:
    if not host or port is None:
        raise ServiceError(f"{setting} must name a host and a port")
    if not is_loopback(host):
        raise ServiceError(
            f"{setting} points at {host}; `services` only runs servers on this machine's loopback"
        )
    # The server listens where the setting points, so that the processes reading the same setting find it:
    # `::1` and the other loopback addresses are themselves; `localhost` is 127.0.0.1 (a client tries each
    # address the name has).
    return ("127.0.0.1" if host == "localhost" else host), port


class RedisServer:
    """Debian's redis-server on loopback, appending to a file under the data folder."""

    name = "redis"

    def __init__(self, services: ServicesSettings, settings: RedisSettings) -> None:
        url = urlsplit(str(settings.url))
        self.host, self.port = _loopback_address(url.hostname, url.port or 6379, "CITIZEN_CONTEXT_REDIS_URL")
        self.data_dir = (services.data_dir / "redis").resolve()
        self.timeout_s = services.start_timeout_s
        # Redis rewrites its process title to "redis-server host:port"; that is what identifies ours.
        self.pid_file = PidFile(self.data_dir / "redis.pid", marker=f"{self.host}:{self.port}")

    def status(self) -> ServerStatus:
        """Whether our Redis runs, and where."""
        address = f"redis://{host_port(self.host, self.port)}"
        return ServerStatus(self.name, address, self.pid_file.running_pid(), self.data_dir)

    def up(self) -> bool:
        """Start Redis unless ours already runs; True when it was started now."""
        if self.pid_file.running_pid() is not None:
            return False
        binary = ensure_command("redis-server", "redis-server")
        refuse_taken_port(self.host, self.port, "CITIZEN_CONTEXT_REDIS_URL")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.data_dir / "redis.log"
        process = spawn(
            [
                binary,
                "--bind",
                self.host,
                "--port",
                str(self.port),
                "--dir",
                str(self.data_dir),
                "--daemonize",
                "no",
                "--appendonly",
                "yes",
                "--save",
                "",
                "--protected-mode",
                "yes",
                *(arg for name, value in PROJECTION_REDIS_CONFIG.items() for arg in (f"--{name}", value)),
            ],
            log_path=log_path,
            pid_file=self.pid_file,
        )
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=1)
        deadline = time.monotonic() + self.timeout_s
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise ServiceError(f"redis-server exited with {process.returncode}:\n{tail(log_path)}")
                try:
                    client.ping()
                    return True
                except (redis.ConnectionError, redis.BusyLoadingError):
                    time.sleep(0.1)
        finally:
            client.close()
        self.pid_file.stop()
        raise ServiceError(f"redis-server did not answer within {self.timeout_s:.0f}s:\n{tail(log_path)}")

    def down(self, *, only: int | None = None) -> bool:
        """Stop our Redis; True if it was running."""
        return self.pid_file.stop(only=only)


class KafkaServer:
    """An Apache Kafka broker in KRaft mode (one node: broker and controller), built from Maven Central."""

    name = "kafka"

    def __init__(self, services: ServicesSettings, settings: KafkaSettings) -> None:
        first = urlsplit(f"//{settings.bootstrap_list[0]}")
        self.host, self.port = _loopback_address(
            first.hostname, first.port, "CITIZEN_CONTEXT_KAFKA_BOOTSTRAP_SERVERS"
        )
        if ":" in self.host:
            # Kafka's storage tool cannot format a single node's KRaft quorum on an IPv6 address (it fails to
            # parse the controller's address back).
            raise ServiceError(
                f"CITIZEN_CONTEXT_KAFKA_BOOTSTRAP_SERVERS points at {self.host}; `services` runs Kafka on an "
                "IPv4 loopback address (127.0.0.1 or localhost)"
            )
        self.controller_port = services.kafka_controller_port
        self.settings = settings
        self.services = services
        self.data_dir = (services.data_dir / "kafka").resolve()
        self.libs_dir = (services.cache_dir / f"kafka-{services.kafka_version}" / "libs").resolve()
        self.properties = self.data_dir / "server.properties"
        self.pid_file = PidFile(self.data_dir / "kafka.pid", marker=str(self.properties))

    def status(self) -> ServerStatus:
        """Whether our broker runs, and where."""
        return ServerStatus(self.name, f"{self.host}:{self.port}", self.pid_file.running_pid(), self.data_dir)

    def up(self) -> bool:
        """Start the broker unless ours already runs, then make sure the interactions topics exist."""
        if self.pid_file.running_pid() is not None:
            ensure_topics(self.settings)
            return False
        java = ensure_command("java", "openjdk-17-jre-headless")
        for port in (self.port, self.controller_port):
            refuse_taken_port(
                self.host,
                port,
                "CITIZEN_CONTEXT_KAFKA_BOOTSTRAP_SERVERS / CITIZEN_CONTEXT_SERVICES_KAFKA_CONTROLLER_PORT",
            )
        self._assemble()
        self._configure()
        log_path = self.data_dir / "kafka.log"
        process = spawn(
            [
                java,
                f"-Xmx{self.services.kafka_heap}",
                f"-Xms{self.services.kafka_heap}",
                "-server",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent",
                "-XX:MaxInlineLevel=15",
                "-Djava.awt.headless=true",
                f"-Dkafka.logs.dir={self.data_dir}",
                f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                "-cp",
                f"{self.libs_dir}/*",
                "kafka.Kafka",
                str(self.properties),
            ],
            log_path=log_path,
            pid_file=self.pid_file,
        )
        deadline = time.monotonic() + self.services.start_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServiceError(f"the Kafka broker exited with {process.returncode}:\n{tail(log_path)}")
            if self._answers():
                ensure_topics(self.settings)
                return True
            time.sleep(0.5)
        self.pid_file.stop()
        raise ServiceError(
            f"the Kafka broker was not ready within {self.services.start_timeout_s:.0f}s:\n{tail(log_path)}"
        )

    def down(self, *, only: int | None = None) -> bool:
        """Stop our broker (SIGTERM lets it close its logs cleanly); True if it was running."""
        return self.pid_file.stop(timeout_s=60, only=only)

    def _assemble(self) -> None:
        """Fetch the broker's jars from Maven Central once; later starts reuse the cache."""
        complete = self.libs_dir.parent / ".complete"
        if complete.exists():
            return
        mvn = ensure_command("mvn", "maven")
        staging = self.libs_dir.parent / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        pom = Path(str(files("ops").joinpath("kafka/pom.xml")))
        log_path = self.libs_dir.parent / "maven.log"
        with log_path.open("w") as log:
            result = subprocess.run(
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(pom),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={staging}",
                    f"-Dkafka.version={self.services.kafka_version}",
                    f"-Dlog4j.version={self.services.kafka_log4j_version}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        if result.returncode != 0:
            raise ServiceError(
                f"Maven could not assemble Kafka {self.services.kafka_version}:\n{tail(log_path)}"
            )
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        staging.rename(self.libs_dir)
        complete.write_text(f"{self.services.kafka_version}\n")

    def _configure(self) -> None:
        """Write the broker's properties and format its storage the first time."""
        log_dirs = self.data_dir / "logs"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        listeners = f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{self.host}:{self.controller_port}",
            "listeners": listeners,
            "advertised.listeners": listeners,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(log_dirs),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Topics are created on purpose (services up, the consumer), never by a typo in a client.
            "auto.create.topics.enable": "false",
        }
        self.properties.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
        log4j = Path(str(files("ops").joinpath("kafka/log4j2.properties")))
        shutil.copyfile(log4j, self.data_dir / "log4j2.properties")
        if (log_dirs / "meta.properties").exists():
            return
        result = subprocess.run(
            [
                "java",
                "-cp",
                f"{self.libs_dir}/*",
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                _cluster_id(),
                "-c",
                str(self.properties),
                "-g",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"could not format Kafka's storage:\n{result.stdout}{result.stderr}")

    def _answers(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        try:
            admin = admin_client(
                [f"{self.host}:{self.port}"], request_timeout_ms=3000, client_id="cc-services"
            )
        except KafkaError:
            return False
        try:
            admin.list_topics()
            return True
        except KafkaError:
            return False
        finally:
            admin.close()


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


class PostgresServer:
    """Debian's PostgreSQL on loopback, its cluster under the data folder (for the SQL side's tests)."""

    name = "postgres"
    user = "citizen"

    def __init__(self, services: ServicesSettings) -> None:
        self.host, self.port = "127.0.0.1", services.postgres_port
        self.data_dir = (services.data_dir / "postgres").resolve()
        self.cluster = self.data_dir / "cluster"
        self.timeout_s = services.start_timeout_s
        self.pid_file = PidFile(self.data_dir / "postgres.pid", marker=str(self.cluster))

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its `postgres` database (trust authentication, loopback only)."""
        return postgres_url(self.port)

    def status(self) -> ServerStatus:
        """Whether our PostgreSQL runs, and where."""
        return ServerStatus(
            self.name, f"postgresql://{self.host}:{self.port}", self.pid_file.running_pid(), self.data_dir
        )

    def up(self) -> bool:
        """Create the cluster the first time and start PostgreSQL unless ours already runs."""
        if self.pid_file.running_pid() is not None:
            return False
        binaries = _postgres_binaries()
        refuse_taken_port(self.host, self.port, "CITIZEN_CONTEXT_SERVICES_POSTGRES_PORT")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        as_user = _unprivileged(self.data_dir)
        if not (self.cluster / "PG_VERSION").exists():
            result = subprocess.run(
                [
                    *as_user,
                    str(binaries / "initdb"),
                    "-D",
                    str(self.cluster),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise ServiceError(f"initdb failed:\n{result.stdout}{result.stderr}")
        log_path = self.data_dir / "postgres.log"
        process = spawn(
            [
                *as_user,
                str(binaries / "postgres"),
                "-D",
                str(self.cluster),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                f"unix_socket_directories={self.data_dir}",
                # A throwaway development server: durability is traded for speed.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            log_path=log_path,
            pid_file=self.pid_file,
        )
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServiceError(f"PostgreSQL exited with {process.returncode}:\n{tail(log_path)}")
            if port_open(self.host, self.port) and _accepts_queries(self.port):
                return True
            time.sleep(0.2)
        self.pid_file.stop()
        raise ServiceError(f"PostgreSQL was not ready within {self.timeout_s:.0f}s:\n{tail(log_path)}")

    def down(self, *, only: int | None = None) -> bool:
        """Stop our PostgreSQL with a fast shutdown (SIGINT: open sessions are ended, data is kept)."""
        return self.pid_file.stop(signum=signal.SIGINT, only=only)


def postgres_url(port: int, database: str = "postgres") -> str:
    """The SQLAlchemy URL of a database of the local PostgreSQL."""
    return f"postgresql+psycopg://{PostgresServer.user}@127.0.0.1:{port}/{database}"


def _postgres_binaries() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if not found:
        ensure_command("psql", "postgresql")
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise ServiceError(
            "PostgreSQL's server binaries are missing; install them with: apt-get install postgresql"
        )
    return found[-1].parent


def _unprivileged(data_dir: Path) -> list[str]:
    """The command prefix that runs PostgreSQL as a user it accepts (it refuses to run as root).

    As root, the server runs as Debian's `postgres` user, owning its data folder, and keeps only the
    capability to traverse folders it does not own: a checkout may sit below folders that only root
    can enter (a private temporary folder, say).
    """
    if os.geteuid() != 0:
        return []
    ensure_command("setpriv", "util-linux")
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError as error:
        raise ServiceError(
            "the postgres user is missing; install it with: apt-get install postgresql"
        ) from error
    for path in [data_dir, *data_dir.rglob("*")]:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return [
        "setpriv",
        f"--reuid={owner.pw_uid}",
        f"--regid={owner.pw_gid}",
        "--init-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ]


def _accepts_queries(port: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user=PostgresServer.user, dbname="postgres", connect_timeout=2
        ) as connection:
            connection.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False
