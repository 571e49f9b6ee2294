"""Stream churn: does one API process's memory stay bounded while desktops come and go all day?

Each round, agents start enquiries for citizens not seen before, open a live stream for each, receive
changes for a while and close them all, as a contact centre's desktops do call after call. The API's
resident memory is read at each round's peak and after its streams have closed. What a round leaves
behind shows as growth from round to round; the API's caches grow too until they are full (their limits
are in context/document_cache.py and context/summary_cache.py), so only the later rounds tell a leak.
With `same_citizens`, every round streams the same citizens, which keeps new citizens' cached documents
out of the growth.
"""

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.freshness import live_run
from bench.stack import FigureStack, rss_mb
from bench.stats import slope

# After a round's streams have closed, the API gets this long to finish closing them before it is measured.
SETTLE_S = 2.0
STREAMS_PER_AGENT = 100
# Changes per second over the round's watched citizens, as in the fan-out figure.
RATE_PER_S = 200.0
# The growth is a slope over the later half of the rounds: two points at least.
MIN_ROUNDS = 4


@dataclass(frozen=True)
class SoakRound:
    """One round: the streams it opened and what they received, the API's memory during and after it."""

    round: int
    streams: int
    failed: int
    changes: int
    peak_rss_mb: float
    rss_after_mb: float


@dataclass
class Soak:
    """Every round of a run, and the API's memory before the first."""

    start_rss_mb: float
    rounds: list[SoakRound] = field(default_factory=list)

    @property
    def growth_mb_per_round(self) -> float:
        """The API's memory growth per round over the later half of the rounds (see `growth_per_round`)."""
        return growth_per_round([r.rss_after_mb for r in self.rounds])

    def to_json(self) -> dict[str, object]:
        """The run as a JSON document."""
        return {
            "start_rss_mb": self.start_rss_mb,
            "growth_mb_per_round": self.growth_mb_per_round,
            "rounds": [asdict(r) for r in self.rounds],
        }


def growth_per_round(rss_after: Sequence[float]) -> float:
    """MiB per round: the slope of the memory after closing over the later half of the rounds.

    The earlier half is left out: the API's caches fill then, growth that stops. Fewer than MIN_ROUNDS
    rounds cannot tell a slope from noise, and raise ValueError.
    """
    if len(rss_after) < MIN_ROUNDS:
        raise ValueError(f"at least {MIN_ROUNDS} rounds are needed to tell growth from noise")
    return round(slope(rss_after[len(rss_after) // 2 :]), 2)


def round_citizens(number: int, streams: int, *, same_citizens: bool) -> list[int]:
    """The citizens round `number` (from 0) streams: new ones each round, as agents take new calls, or
    the first round's again."""
    first = 1 if same_citizens else number * streams + 1
    return list(range(first, first + streams))


def measure(
    work_dir: Path,
    *,
    rounds: int,
    streams: int,
    seconds: float,
    rate_per_s: float,
    say: Callable[[str], None],
    same_citizens: bool = False,
) -> Soak:
    """Run `rounds` rounds of `streams` streams, each fed changes at `rate_per_s` for `seconds`."""
    if rounds < MIN_ROUNDS:
        raise ValueError(f"at least {MIN_ROUNDS} rounds are needed to tell growth from noise")
    stack = FigureStack.create("soak", work_dir)
    try:
        stack.consumer()
        api = stack.api()
        soak = Soak(start_rss_mb=rss_mb(api.pid))
        say(f"API resident memory before the first round: {soak.start_rss_mb} MiB")
        for number in range(rounds):
            citizens = round_citizens(number, streams, same_citizens=same_citizens)
            seen, peak = live_run(
                stack,
                watched=citizens,
                targets=citizens,
                rate_per_s=rate_per_s,
                duration_s=seconds,
                agents=max(streams // STREAMS_PER_AGENT, 1),
                sample_rss=True,
            )
            time.sleep(SETTLE_S)
            done = SoakRound(
                round=number + 1,
                streams=seen.opened,
                failed=seen.failed,
                changes=seen.messages.get("change", 0),
                peak_rss_mb=peak,
                rss_after_mb=rss_mb(api.pid),
            )
            soak.rounds.append(done)
            say(json.dumps(asdict(done)))
        return soak
    finally:
        stack.close()
