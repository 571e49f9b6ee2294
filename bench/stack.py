"""The processes a figure measures: real `citizen-context consume` and `api` processes, isolated per figure.

Each figure gets its own Redis key prefix, Kafka topic, consumer group, SQLite database and ports, so
figures never disturb each other, the developer's data, or other runs. Every process started here is
stopped here, by its PID.
"""

import os
import resource
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from context.settings import RedisSettings
from events.deadletter import dead_letter_topic
from events.settings import KafkaSettings
from events.topics import admin_client, ensure_topics


def raise_fd_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit (10,000 sockets need it); the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stat_fields(pid: int | str) -> list[str]:
    """A process's /proc stat fields after its command name: state first, then ppid (field 4 of the whole
    line), ..., utime, stime, cutime and cstime at 11 to 14."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process has used so far, in seconds (from /proc)."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Redis reaps a rewrite's child once in a while, not in a loop: a second reading is nearly always enough.
FORK_READ_ATTEMPTS = 5


def forks_cpu_seconds(pids: Collection[int]) -> dict[int, float]:
    """CPU time (user and system) so far of each process's children, in seconds (from /proc): those it has
    reaped, and those still running (Redis rewrites its append-only file in a child, on the cores the
    figure's processes share). A child's time counts from its start whenever it is read, so the
    difference between two readings is the children's CPU between them."""
    hz = os.sysconf("SC_CLK_TCK")
    for _attempt in range(FORK_READ_ATTEMPTS):
        reaped = {pid: _reaped_ticks(pid) for pid in pids}
        running = dict.fromkeys(pids, 0)
        for _child, fields in children_stats(pids):
            # A running child's own time and that of the children it reaped.
            running[int(fields[1])] += sum(int(field) for field in fields[11:15])
        # A child reaped during the scan is in neither count: read again, until no parent reaped one.
        if all(_reaped_ticks(pid) == reaped[pid] for pid in pids):
            break
    return {pid: (reaped[pid] + running[pid]) / hz for pid in pids}


def _reaped_ticks(pid: int) -> int:
    """CPU clock ticks (user and system) of the children a process has reaped (cutime and cstime)."""
    return sum(int(field) for field in stat_fields(pid)[13:15])


def children_stats(pids: Collection[int]) -> Iterator[tuple[int, list[str]]]:
    """(child, its stat fields as `stat_fields` gives them, its parent's pid at 1) for each running child
    of `pids`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = stat_fields(entry.name)
        except OSError:
            continue  # it has ended meanwhile
        if int(fields[1]) in pids:
            yield int(entry.name), fields


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


@dataclass
class Child:
    """A project process started by the bench."""

    name: str
    process: "subprocess.Popen[bytes]"
    log_path: Path
    # Whether it was sent SIGTERM already: a second one makes uvicorn exit at once, without its shutdown.
    signalled: bool = False

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.process.pid

    def alive(self) -> bool:
        """True while it runs."""
        return self.process.poll() is None

    def terminate(self) -> None:
        """Send it SIGTERM (once) if it still runs."""
        if self.process.poll() is None and not self.signalled:
            self.process.terminate()
            self.signalled = True

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        self.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


# The figure's SQLite database (the API's audit records and enquiries), in its folder beside the logs.
DATABASE_FILE = "api.db"


@dataclass
class FigureStack:
    """One figure's isolated environment, and the processes started in it."""

    name: str
    work_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)
    api_port: int = 0
    health_port: int = 0

    @classmethod
    def create(cls, name: str, work_dir: Path, *, partitions: int = 6) -> "FigureStack":
        """A fresh prefix, topic (with `partitions`), group, database and ports for figure `name`."""
        run = uuid.uuid4().hex[:8]
        figure_dir = work_dir / f"{name}-{run}"
        figure_dir.mkdir(parents=True, exist_ok=True)
        stack = cls(name=name, work_dir=figure_dir, api_port=free_port(), health_port=free_port())
        stack.env = {
            "CITIZEN_CONTEXT_REDIS_KEY_PREFIX": f"bench-{name}-{run}",
            "CITIZEN_CONTEXT_KAFKA_TOPIC": f"bench.{name}.{run}",
            "CITIZEN_CONTEXT_KAFKA_GROUP_ID": f"bench-{name}-{run}",
            "CITIZEN_CONTEXT_KAFKA_TOPIC_PARTITIONS": str(partitions),
            "CITIZEN_CONTEXT_CONSUMER_HEALTH_PORT": str(stack.health_port),
            "CITIZEN_CONTEXT_API_PORT": str(stack.api_port),
            "CITIZEN_CONTEXT_DATABASE_URL": f"sqlite:///{figure_dir / DATABASE_FILE}",
            # The bench measures capacity, not the per-agent rate limits (which would cut it short).
            "CITIZEN_CONTEXT_SECURITY_AGENT_RATE": "1000000/second",
            "CITIZEN_CONTEXT_SECURITY_KEY_RATE": "1000000/second",
            "PYTHONUNBUFFERED": "1",
        }
        ensure_topics(stack.kafka)
        stack.settle_append_only_file()
        return stack

    def settle_append_only_file(self) -> None:
        """Have Redis rewrite its append-only file before the figure is timed (rewrite_append_only_file)."""
        client = redis.Redis.from_url(str(self.redis.url))
        try:
            rewrite_append_only_file(client)
        finally:
            client.close()

    @property
    def kafka(self) -> KafkaSettings:
        """Kafka settings of this figure (its topic and group)."""
        return KafkaSettings(
            topic=self.env["CITIZEN_CONTEXT_KAFKA_TOPIC"],
            group_id=self.env["CITIZEN_CONTEXT_KAFKA_GROUP_ID"],
            topic_partitions=int(self.env["CITIZEN_CONTEXT_KAFKA_TOPIC_PARTITIONS"]),
        )

    @property
    def redis(self) -> RedisSettings:
        """Redis settings of this figure (its key prefix)."""
        return RedisSettings(key_prefix=self.env["CITIZEN_CONTEXT_REDIS_KEY_PREFIX"])

    @property
    def api_url(self) -> str:
        """The API's base URL."""
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, name: str, *args: str, ready_url: str | None = None, timeout_s: float = 90) -> Child:
        """Start `citizen-context ARGS` in this environment; wait until `ready_url` answers 200."""
        log_path = self.work_dir / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", *args],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own session: a Ctrl-C on the bench reaches the bench, which stops it in order. The
                # limit of open files is inherited: the runner raised its own first (see raise_fd_limit).
                start_new_session=True,
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        if ready_url is not None:
            wait_ready(ready_url, child, timeout_s=timeout_s)
        return child

    def consumer(self) -> Child:
        """A `citizen-context consume` process, once its /readyz answers."""
        return self.start("consumer", "consume", ready_url=f"http://127.0.0.1:{self.health_port}/readyz")

    def api(self) -> Child:
        """A `citizen-context api` process, once its /readyz answers."""
        return self.start("api", "api", "--port", str(self.api_port), ready_url=f"{self.api_url}/readyz")

    def close(self, *, keep_data: bool = False) -> None:
        """Stop every process of the figure; delete its Redis keys, topics and database unless `keep_data`.
        Its processes' logs stay in its folder."""
        # All are told first, then waited for: an interrupt while one is waited for leaves none unsignalled.
        for child in reversed(self.children):
            child.terminate()
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if keep_data:
            return
        # The database and its journal files: a context read figure's audit records alone take 25 MB, and
        # every run left them behind.
        for path in self.work_dir.glob(f"{DATABASE_FILE}*"):
            path.unlink(missing_ok=True)
        client = redis.Redis.from_url(str(self.redis.url))
        try:
            batch = []
            for key in client.scan_iter(match=f"{self.redis.key_prefix}:*", count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    client.unlink(*batch)
                    batch = []
            if batch:
                client.unlink(*batch)
        finally:
            client.close()
        admin = admin_client(self.kafka.bootstrap_list)
        try:
            admin.delete_topics([self.kafka.topic, dead_letter_topic(self.kafka.topic)])
        except Exception:  # noqa: S110 (a topic that was never created needs no deleting)
            pass
        finally:
            admin.close()


# Redis rewrites its append-only file once the file has doubled since the last rewrite: a child process
# then writes out the whole dataset, on a core the figure's processes need. Figures write hundreds of
# thousands of events and delete them afterwards, so one figure's writes made a rewrite due in the next:
# during a freshness run, a rewrite that began in its timed window held changes back for up to 550 ms.
REWRITE_TIMEOUT_S = 300.0


def rewrite_append_only_file(client: "redis.Redis", *, timeout_s: float = REWRITE_TIMEOUT_S) -> bool:
    """Have Redis rewrite its append-only file now, and wait until it is done (False: no such file).

    Each figure starts this way, so a rewrite the earlier figures made due does not land in its timed
    window; a figure's own writes can still make one due, as a production Redis's do.
    """
    state = client.info("persistence")
    if not state["aof_enabled"]:
        return False
    if not state["aof_rewrite_in_progress"]:
        try:
            client.bgrewriteaof()
        except redis.ResponseError as error:
            # Redis began one of its own meanwhile: waiting for it does as well.
            if "in progress" not in str(error):
                raise
    deadline = time.monotonic() + timeout_s
    while True:
        state = client.info("persistence")
        if not state["aof_rewrite_in_progress"] and not state["aof_rewrite_scheduled"]:
            if state["aof_last_bgrewrite_status"] != "ok":
                raise RuntimeError("Redis could not rewrite its append-only file (see its log)")
            return True
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis did not rewrite its append-only file within {timeout_s:.0f} s")
        time.sleep(0.05)


def wait_ready(url: str, child: Child, *, timeout_s: float) -> None:
    """Poll `url` until it answers 200; fail with the child's log if it exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited while starting:\n{_tail(child.log_path)}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{child.name} was not ready within {timeout_s:.0f}s:\n{_tail(child.log_path)}")


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
