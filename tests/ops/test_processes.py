"""PID files and process control: only what we started is ever signalled."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ops.processes import PidFile, http_url, is_our_process, port_open, uninterrupted


def sleeper() -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "cc-test-sleeper"])
    # /proc shows the new command line only once the exec has fully happened.
    deadline = time.monotonic() + 10
    while not is_our_process(process.pid, "cc-test-sleeper") and time.monotonic() < deadline:
        time.sleep(0.01)
    return process


def test_a_recorded_process_is_found_and_stopped(tmp_path: Path) -> None:
    process = sleeper()
    pid_file = PidFile(tmp_path / "s.pid", marker="cc-test-sleeper")
    pid_file.write(process.pid)
    assert pid_file.running_pid() == process.pid
    assert pid_file.stop(timeout_s=5)
    # stop() reaps its own children, so the exit status may already be gone; the process is.
    process.wait(timeout=5)
    assert not is_our_process(process.pid, "cc-test-sleeper")
    assert not pid_file.path.exists()
    assert not pid_file.stop()


def test_a_pid_that_is_not_ours_is_never_signalled(tmp_path: Path) -> None:
    process = sleeper()
    try:
        pid_file = PidFile(tmp_path / "s.pid", marker="some-other-program")
        pid_file.write(process.pid)
        assert pid_file.running_pid() is None
        assert not pid_file.stop()
        assert process.poll() is None
        # Kept: a process runs under that PID, which may be ours, started with other settings (a status
        # asked with a mistyped port removed the file of the Redis it started, and nothing could stop it).
        assert pid_file.path.exists()
    finally:
        process.kill()
        process.wait()
    assert pid_file.running_pid() is None
    assert not pid_file.path.exists()  # removed once that process has ended


def test_a_dead_process_is_not_ours(tmp_path: Path) -> None:
    process = sleeper()
    process.kill()
    process.wait()
    assert not is_our_process(process.pid, "cc-test-sleeper")


def test_port_open_sees_a_listener() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_open("127.0.0.1", port)
    assert not port_open("127.0.0.1", port)


def test_api_and_consumer_refuse_a_taken_port_with_a_clear_error_at_once() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runs = {
            "api": (["api", "--port", str(port), "--no-migrate"], {}),
            "consume": (["consume"], {"CITIZEN_CONTEXT_CONSUMER_HEALTH_PORT": str(port)}),
        }
        for name, (args, env) in runs.items():
            result = subprocess.run(
                [sys.executable, "-m", "ops.cli", *args],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 1, (name, result.stderr)
            assert f"cannot listen on 127.0.0.1:{port}: the port is taken" in result.stderr, name
            assert "Traceback" not in result.stderr, name


def test_a_ctrl_c_during_an_uninterrupted_step_takes_effect_as_it_ends() -> None:
    steps: list[str] = []

    def step() -> None:
        with uninterrupted():
            signal.raise_signal(signal.SIGINT)
            steps.append("started")
            steps.append("recorded")  # e.g. a process started, then its PID written

    with pytest.raises(KeyboardInterrupt):
        step()
    assert steps == ["started", "recorded"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_sigterm_during_nested_steps_reaches_its_own_handler_once_after_the_outer_one() -> None:
    received: list[str] = []
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: received.append("handled"))
    try:
        with uninterrupted():
            with uninterrupted():
                signal.raise_signal(signal.SIGTERM)
            assert received == []
        assert received == ["handled"]
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("::1", "http://[::1]:8000"),
        ("fe80::1%eth0", "http://[fe80::1%25eth0]:8000"),  # a zone's `%` is escaped in a URL (RFC 6874)
    ],
)
def test_a_listening_address_becomes_a_url(host: str, url: str) -> None:
    assert http_url(host, 8000) == url
