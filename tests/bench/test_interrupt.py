"""A bench stopped by SIGTERM (a CI job's time limit, `kill`) stops every process it started first."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.stack import children_stats, stat_fields
from ops.settings import ServicesSettings

# A process's start time (clock ticks since boot), field 22 of its stat line: with the pid, it names the
# process, so a pid the system reused since is never signalled.
START_TIME = 19


def _project_children(pid: int) -> dict[int, tuple[str, str]]:
    """The project processes (`python -m ops.cli ...`) whose parent is `pid`: pid -> (start time, command)."""
    found = {}
    for child, fields in children_stats([pid]):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # it ended meanwhile
        if "ops.cli" in command:
            found[child] = (fields[START_TIME], command)
    return found


def _still_running(processes: dict[int, tuple[str, str]]) -> list[int]:
    """Those of `processes` that still run (the same process: same pid, same start time)."""
    running = []
    for pid, (started_at, _command) in processes.items():
        try:
            fields = stat_fields(pid)
        except OSError:
            continue
        if fields[START_TIME] == started_at and fields[0] != "Z":
            running.append(pid)
    return running


def test_a_bench_ended_by_sigterm_stops_the_consumer_and_api_it_started(tmp_path: Path) -> None:
    # The freshness figure starts a consumer, then an API, each in a session of its own (so that a Ctrl-C
    # reaches only the bench): nothing but the bench itself can stop them.
    figures_dir = ServicesSettings().data_dir / "bench"
    figures_before = set(figures_dir.glob("freshness-*"))
    command = ["bench", "--quick", "--only", "freshness", "--report-dir", str(tmp_path)]
    with (tmp_path / "bench.log").open("wb") as log:
        bench = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", *command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    started: dict[int, tuple[str, str]] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and bench.poll() is None:
            started = _project_children(bench.pid)
            if any(" api " in command for _at, command in started.values()):
                break
            time.sleep(0.1)
        commands = [command for _at, command in started.values()]
        assert any(" consume" in command for command in commands), (tmp_path / "bench.log").read_text()
        assert any(" api " in command for command in commands), (tmp_path / "bench.log").read_text()
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=90) != 0  # interrupted, not a run that completed
        # Each was stopped and reaped by the bench: none is left running, none waits to be reaped.
        assert _still_running(started) == []
        assert "Aborted" in (tmp_path / "bench.log").read_text()
    finally:
        # Whatever failed above, nothing of this test is left behind: the bench, what it started, the
        # figure's folder of logs.
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        for pid in _still_running(started):
            os.kill(pid, signal.SIGKILL)
        for folder in set(figures_dir.glob("freshness-*")) - figures_before:
            shutil.rmtree(folder, ignore_errors=True)
