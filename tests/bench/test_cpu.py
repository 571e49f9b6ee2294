"""Where a figure's CPU went: the shares are computed right, from real processes, and name the servers."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cpu import CpuShares, CpuWindow, figure_processes, machine_busy_seconds, shares
from bench.stack import Child, FigureStack, cpu_seconds, forks_cpu_seconds

SPIN = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass"
SLEEP = "import time\ntime.sleep(30)"
# A parent that runs a child spinning for 0.4 s of CPU, waits for it (as Redis reaps the child that rewrote
# its append-only file), prints what the kernel says its reaped children used, then sleeps.
FORKER = (
    "import os, subprocess, sys, time\n"
    "spin = 'import time\\nwhile time.process_time() < 0.4: pass'\n"
    "subprocess.run([sys.executable, '-c', spin], check=True)\n"
    "times = os.times()\n"
    "print(times.children_user + times.children_system, flush=True)\n"
    "time.sleep(30)"
)
# A parent whose one child spins (for 30 s at most) while it sleeps; it prints the child's pid.
PARENT_OF_SPINNER = (
    "import subprocess, sys, time\n"
    f"child = subprocess.Popen([sys.executable, '-c', {SPIN!r}])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(30)"
)


def test_the_machine_is_busy_but_for_idle_and_io_wait() -> None:
    hz = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal (guest columns after them are inside user and nice)
    stat = f"cpu  {3 * hz} {hz} {2 * hz} {10 * hz} {hz} 0 {hz} {hz} 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
    assert machine_busy_seconds(stat) == (8.0, 19.0)


def test_shares_are_cpu_seconds_per_second_of_those_seen_at_both_ends() -> None:
    before = {"consumer": 10.0, "redis": 4.0, "gone": 1.0}
    after = {"consumer": 19.0, "redis": 8.5, "new": 3.0}
    assert shares(before, after, 10.0) == {"consumer": 0.9, "redis": 0.45}
    assert shares(before, after, 0.0) == {}


def test_the_description_puts_the_busiest_first_then_the_machine() -> None:
    cpu = CpuShares(
        processes={"redis": 0.48, "consumer": 0.95, "kafka": 0.06}, machine_busy=1.52, cores=2, seconds=16.2
    )
    assert cpu.describe() == (
        "CPU over the timed 16 s, in cores: consumer 0.95, redis 0.48, kafka 0.06; the machine 1.52 of 2 busy"
    )
    # Given the events the window covered, each process that used CPU also gets its CPU per event; forks
    # that used none are left out, and a process that used none is listed but has no CPU per event.
    forked = CpuShares(
        processes={"consumer": 0.8, "redis": 0.6, "redis forks": 0.1, "consumer forks": 0.0, "kafka": 0.0},
        machine_busy=1.7,
        cores=2,
        seconds=10.0,
    )
    assert forked.describe(events=200_000) == (
        "CPU over the timed 10 s, in cores: consumer 0.80, redis 0.60, redis forks 0.10, kafka 0.00; the "
        "machine 1.70 of 2 busy; per event: consumer 40.0 us, redis 30.0 us, redis forks 5.0 us"
    )
    # A window that closed at once (its process had already gone) says so rather than print nothing.
    empty = CpuShares(processes={}, machine_busy=0.0, cores=2, seconds=0.0)
    assert empty.describe() == "CPU not measured: a watched process ended before the timed window did"


@pytest.fixture
def spinner_and_sleeper() -> Iterator[tuple["subprocess.Popen[bytes]", "subprocess.Popen[bytes]"]]:
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    sleeper = subprocess.Popen([sys.executable, "-c", SLEEP])
    yield spinner, sleeper
    for process in (spinner, sleeper):
        process.kill()
        process.wait()


def test_a_window_measures_real_processes_and_ends_when_one_of_them_exits(
    spinner_and_sleeper: tuple["subprocess.Popen[bytes]", "subprocess.Popen[bytes]"],
) -> None:
    spinner, sleeper = spinner_and_sleeper
    window = CpuWindow({"spinner": spinner.pid, "sleeper": sleeper.pid})
    # Until the spinner has used a tenth of a second of CPU since the window opened (it spins, so it will).
    deadline = time.monotonic() + 20
    spun = 0.0
    while spun < 0.1 and time.monotonic() < deadline:
        time.sleep(0.05)
        measured = window.end()
        spun = measured.processes["spinner"] * measured.seconds
    open_for = window.end().seconds
    sleeper.kill()
    sleeper.wait()
    window.sample()  # the sleeper has gone: the window no longer moves on
    cpu = window.end()
    assert set(cpu.processes) == {"spinner", "sleeper", "spinner forks", "sleeper forks"}
    assert cpu.processes["spinner forks"] == cpu.processes["sleeper forks"] == 0  # neither has children
    assert cpu.processes["spinner"] > cpu.processes["sleeper"]
    assert cpu.seconds >= open_for
    assert cpu.seconds == window.end().seconds  # still ends where the sleeper was last seen
    assert 0 < cpu.machine_busy <= cpu.cores


def test_a_process_s_children_count_apart_from_its_own_cpu_once_reaped_and_while_they_run() -> None:
    with subprocess.Popen([sys.executable, "-c", FORKER], stdout=subprocess.PIPE) as parent:
        try:
            assert parent.stdout is not None
            reaped = float(parent.stdout.readline())  # the child has spun and been waited for
            forks = forks_cpu_seconds([parent.pid])[parent.pid]
            own = cpu_seconds(parent.pid)
        finally:
            parent.kill()
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert reaped >= 0.4 - tick
    # What the kernel told the parent, from the parent's own stat (user and system are rounded apart).
    assert abs(forks - reaped) <= 2 * tick
    assert own < forks  # the parent only started the child and waited

    # A child still running counts too, from its start: the difference between two readings is what the
    # children used in between, whether or not they have ended since.
    with subprocess.Popen([sys.executable, "-c", PARENT_OF_SPINNER], stdout=subprocess.PIPE) as parent:
        spinner = 0
        try:
            assert parent.stdout is not None
            spinner = int(parent.stdout.readline())
            before = forks_cpu_seconds([parent.pid])[parent.pid]
            spun_before = cpu_seconds(spinner)
            deadline = time.monotonic() + 20
            while cpu_seconds(spinner) < spun_before + 0.2 and time.monotonic() < deadline:
                time.sleep(0.05)
            after = forks_cpu_seconds([parent.pid])[parent.pid]
            spun = cpu_seconds(spinner) - spun_before
        finally:
            if spinner:
                os.kill(spinner, signal.SIGKILL)  # the parent's child: killing the parent would orphan it
            parent.kill()
    # What the spinner used between the two readings, read just after the second (so a little more).
    assert 0.2 - 2 * tick <= after - before <= spun + 2 * tick


def test_a_figure_watches_its_processes_the_servers_it_uses_and_its_load(tmp_path: Path) -> None:
    stack = FigureStack(name="cpu", work_dir=tmp_path)
    process = subprocess.Popen([sys.executable, "-c", SLEEP])
    try:
        stack.children.append(Child("consumer", process, tmp_path / "consumer.log"))
        found = figure_processes(stack, producer=os.getpid(), desktops=None)
    finally:
        process.kill()
        process.wait()
    # The test command started Redis and Kafka (their PIDs are in the data folder); SQL is not a figure's.
    assert set(found) == {"consumer", "producer", "redis", "kafka"}
    assert found["consumer"] == process.pid
    assert found["producer"] == os.getpid()
    assert all(Path(f"/proc/{pid}").exists() for name, pid in found.items() if name != "consumer")
