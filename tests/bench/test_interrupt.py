"""A bench stopped by SIGTERM (a CI job's time limit, `kill`) stops every process it started first."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.stack import _stat


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(_stat(entry.name)[1]) == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # it ended meanwhile
    return found


def test_a_bench_ended_by_sigterm_stops_the_consumer_and_api_it_started(tmp_path: Path) -> None:
    # The freshness figure starts a consumer, then an API, each in a session of its own (so that a Ctrl-C
    # reaches only the bench): nothing but the bench itself can stop them.
    command = ["bench", "--quick", "--only", "freshness", "--report-dir", str(tmp_path)]
    with (tmp_path / "bench.log").open("wb") as log:
        bench = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", *command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 120
        started: dict[int, str] = {}
        while time.monotonic() < deadline and bench.poll() is None:
            started = {pid: line for pid, line in _children(bench.pid).items() if "ops.cli" in line}
            if any(" api " in line for line in started.values()):
                break
            time.sleep(0.1)
        assert any(" consume" in line for line in started.values()), (tmp_path / "bench.log").read_text()
        assert any(" api " in line for line in started.values()), (tmp_path / "bench.log").read_text()
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=90) != 0  # interrupted, not a run that completed
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    # Each was stopped and reaped by the bench: none is left running, none waits to be reaped.
    left = [pid for pid in started if Path(f"/proc/{pid}").exists()]
    for pid in left:
        os.kill(pid, signal.SIGKILL)  # a failing run must not leave them behind either
    assert left == []
    assert "Aborted" in (tmp_path / "bench.log").read_text()
