"""Figure 6, rebuild: events/s of `citizen-context rebuild` replaying the ingest figure's topic."""

import os
import re
import subprocess
import sys

from bench.results import Rebuild
from bench.stack import FigureStack

# The command's own rate: the seconds it prints are rounded to a tenth, too coarse for a quick run.
REPORT = re.compile(r"(\d+) records replayed in [\d.]+s \(([\d,]+)/s\)")


def measure(stack: FigureStack) -> Rebuild:
    """Run the real command (its own process) on a topic that holds the ingest figure's events."""
    done = subprocess.run(
        [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "rebuild", "--grace", "0"],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    found = REPORT.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(
            f"rebuild failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return Rebuild(events_per_s=int(found.group(2).replace(",", "")))
