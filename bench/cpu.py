"""Where a figure's CPU went: each process's share of a core over the figure's timed window (from /proc).

Every process of a figure shares the machine's cores: the consumer and the API it measures, Redis and the
broker, and the bench's own load generators. A figure that falls short is limited by one of them (one
process's interpreter lock, a server) or by the machine itself running out of cores; the shares in the
report tell which, in every run. A process's children count apart, as "<name> forks": Redis rewrites its
append-only file in a child process, whose CPU its own does not include. Where a figure counts events, the
shares are also given as CPU per event, which holds across machines of different speeds: with every process's
CPU per event summed, the machine's cores bound the rate at cores x 1,000,000 / that sum (events/s).
"""

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.stack import FigureStack, cpu_seconds, forks_cpu_seconds
from ops.servers import local_servers

# The servers the figures use (their SQL is SQLite, in the API's own process).
FIGURE_SERVERS = ("redis", "kafka")
# A process's children (running or reaped) are counted under its name with this suffix ("redis forks").
FORKS = " forks"
# Below this share of a core, a process is taken to have used no CPU: its forks are left out of the line,
# and it gets no CPU per event (shares are printed to two places).
NO_CPU = 0.005


def machine_busy_seconds(stat: str) -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from the text of /proc/stat (pure).

    Busy is everything but idle and waiting for I/O; stolen time (another guest on the same host) counts
    as busy, since no process of the machine could use it.
    """
    fields = [int(value) for value in stat.split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    hz = os.sysconf("SC_CLK_TCK")
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return (total - idle - iowait) / hz, total / hz


def shares(before: Mapping[str, float], after: Mapping[str, float], seconds: float) -> dict[str, float]:
    """Each process's CPU seconds over a window as a share of one core (pure); those seen at both ends."""
    if seconds <= 0:
        return {}
    return {name: (after[name] - before[name]) / seconds for name in before if name in after}


@dataclass(frozen=True)
class CpuShares:
    """What a window measured: each process's share of a core, and how busy the machine's cores were."""

    processes: dict[str, float]
    machine_busy: float  # cores' worth busy, of `cores`
    cores: int
    seconds: float

    def describe(self, *, events: int | None = None) -> str:
        """One line for the report: the processes, busiest first, then the machine; given the `events` the
        window covered, also the CPU per event of each process that used CPU. Forks that used none are left
        out (see NO_CPU)."""
        if not self.processes or self.seconds <= 0:
            return "CPU not measured: a watched process ended before the timed window did"
        busiest = [
            (name, share)
            for name, share in sorted(self.processes.items(), key=lambda item: item[1], reverse=True)
            if share >= NO_CPU or not name.endswith(FORKS)
        ]
        parts = ", ".join(f"{name} {share:.2f}" for name, share in busiest)
        line = (
            f"CPU over the timed {self.seconds:.0f} s, in cores: {parts}; the machine "
            f"{self.machine_busy:.2f} of {self.cores} busy"
        )
        if events:
            per_event = ", ".join(
                f"{name} {share * self.seconds / events * 1e6:.1f} us"
                for name, share in busiest
                if share >= NO_CPU
            )
            line += f"; per event: {per_event}"
        return line


@dataclass(frozen=True)
class _Snapshot:
    at: float  # time.monotonic()
    processes: dict[str, float]  # CPU seconds so far, of those that still run
    machine_busy: float
    machine_total: float


class CpuWindow:
    """Started with the processes to watch (name -> PID); `end()` gives their shares since the start.

    A process that exits during the window can no longer be read: the window then ends at its last
    `sample()` in which every process still ran (the live runs sample every half second).
    """

    def __init__(self, processes: Mapping[str, int]) -> None:
        self._pids = dict(processes)
        self._start = self._snapshot()
        self._last = self._start

    def _snapshot(self) -> _Snapshot:
        processes: dict[str, float] = {}
        running: dict[str, int] = {}
        for name, pid in self._pids.items():
            try:
                processes[name] = cpu_seconds(pid)
            except OSError:
                continue  # it has exited
            running[name] = pid
        try:
            forks = forks_cpu_seconds(running.values())
        except OSError:
            forks = {}  # one has exited meanwhile: without its forks' keys, sample() sets this one aside
        processes.update({name + FORKS: forks[pid] for name, pid in running.items() if pid in forks})
        busy, total = machine_busy_seconds(Path("/proc/stat").read_text())
        return _Snapshot(time.monotonic(), processes, busy, total)

    def sample(self) -> None:
        """Move the window's end to now, unless a process it started with has exited since."""
        snapshot = self._snapshot()
        if snapshot.processes.keys() == self._start.processes.keys():
            self._last = snapshot

    def end(self) -> CpuShares:
        """The shares from the start to now (or to the last sample in which every process ran)."""
        self.sample()
        start, last = self._start, self._last
        seconds = last.at - start.at
        cores = os.cpu_count() or 1
        elapsed = last.machine_total - start.machine_total
        busy = (last.machine_busy - start.machine_busy) / elapsed * cores if elapsed > 0 else 0.0
        return CpuShares(
            processes=shares(start.processes, last.processes, seconds),
            machine_busy=round(busy, 2),
            cores=cores,
            seconds=seconds,
        )


def figure_processes(stack: FigureStack, **load: int | None) -> dict[str, int]:
    """The processes of a figure: its project processes, the local servers, and the named load generators."""
    processes = {child.name: child.pid for child in stack.children if child.alive()}
    for server in local_servers():
        pid = server.status().pid
        # A server the project did not start is not ours to read; PostgreSQL takes no part in a figure.
        if server.name in FIGURE_SERVERS and pid is not None:
            processes[server.name] = pid
    processes.update({name: pid for name, pid in load.items() if pid is not None})
    return processes
