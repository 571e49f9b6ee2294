"""`citizen-context dev` (what `make run` runs): Ctrl-C stops it at any moment, and a crash is its failure."""

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Stack, wait_until


class Dev:
    """A `dev` process in the stack's environment, its output collected as it comes."""

    def __init__(self, stack: Stack, *args: str) -> None:
        env = {**os.environ, **stack.env, "CITIZEN_CONTEXT_API_PORT": str(stack.api_port)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "dev", "--simulate-rate", "0", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def close(self) -> None:
        """Stop it (SIGTERM) unless it has ended, then let go of its output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def children(self) -> dict[int, str]:
        """Its child processes: PID -> command line."""
        listed = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            pids = [int(pid) for pid in listed.read_text().split()]
        except FileNotFoundError:
            return {}  # it has ended
        return {pid: _command_line(pid) for pid in pids}


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


@pytest.fixture
def dev_process(stack: Stack) -> Iterator[list[Dev]]:
    started: list[Dev] = []
    yield started
    for dev in started:
        dev.close()


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_during_start_up_stops_everything_started_at_once(
    stack: Stack, dev_process: list[Dev]
) -> None:
    dev = Dev(stack)
    dev_process.append(dev)
    # The servers run already (the test run's): dev starts the API and the consumer, and waits for them.
    wait_until(lambda: len(dev.children()) == 2, what="dev starting the API and the consumer")
    children = dev.children()
    dev.process.send_signal(signal.SIGINT)
    assert dev.process.wait(timeout=60) == 0, dev.output
    # Stopped where it was: it never got as far as saying it runs. The API and the consumer are gone; the
    # servers, which it did not start, still run.
    assert "Citizen Context is running." not in dev.output
    assert "Traceback" not in dev.output
    for pid, command in children.items():
        assert not Path(f"/proc/{pid}").exists() or command not in _command_line(pid)
    assert not listening(stack.api_port)
    assert "stopped" not in dev.output


def test_a_process_that_stops_by_itself_stops_dev_with_status_1(stack: Stack, dev_process: list[Dev]) -> None:
    dev = Dev(stack, "--no-demo")
    dev_process.append(dev)
    wait_until(lambda: "Press Ctrl-C to stop." in dev.output, what="dev running")
    consumer = next(pid for pid, command in dev.children().items() if command.rstrip().endswith("consume"))
    os.kill(consumer, signal.SIGKILL)  # a process this test started, through dev
    assert dev.process.wait(timeout=60) == 1, dev.output
    assert f"the consumer exited with {-signal.SIGKILL}; stopping" in dev.output
    assert not listening(stack.api_port)
