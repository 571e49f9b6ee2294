"""Figure 6, rebuild: events/s of `citizen-context rebuild` replaying the ingest figure's topic."""

import os
import re
import subprocess
import sys
import time

from bench.cpu import CpuShares, CpuWindow, figure_processes
from bench.results import Rebuild
from bench.stack import Child, FigureStack

TIMEOUT_S = 900.0
# The command's own rate: the seconds it prints are rounded to a tenth, too coarse for a quick run.
REPORT = re.compile(r"(\d+) records replayed in [\d.]+s \(([\d,]+)/s\)")


def measure(stack: FigureStack) -> tuple[Rebuild, int, CpuShares]:
    """Run the real command (its own process) on a topic that holds the ingest figure's events; the figure,
    the records it replayed, and where the CPU went while the command ran (its start-up, and the old
    generation's deletion, included)."""
    # As every figure starts (FigureStack.create): a rewrite the ingest figure made due is not this one's.
    stack.settle_append_only_file()
    out_path, err_path = stack.work_dir / "rebuild.out", stack.work_dir / "rebuild.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "rebuild", "--grace", "0"],
            env={**os.environ, **stack.env},
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    try:
        window = CpuWindow(figure_processes(stack, rebuild=process.pid))
        deadline = time.monotonic() + TIMEOUT_S
        # Wait for it to exit without reaping it: until it is reaped, /proc still holds its CPU time.
        while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is None:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"rebuild did not finish within {TIMEOUT_S:.0f} s")
            time.sleep(0.1)
        cpu = window.end()
    finally:
        # Reaped once its CPU is read; after a failure, Ctrl-C or SIGTERM (see ops/cli/bench.py) stopped as
        # any figure's process is, so that nothing of a figure outlives it.
        Child("rebuild", process, out_path).stop()
    stdout, stderr = out_path.read_text(), err_path.read_text()
    found = REPORT.search(stdout)
    if process.returncode != 0 or found is None:
        raise RuntimeError(f"rebuild failed ({process.returncode}):\n{stdout[-2000:]}\n{stderr[-2000:]}")
    return Rebuild(events_per_s=int(found.group(2).replace(",", ""))), int(found.group(1)), cpu
