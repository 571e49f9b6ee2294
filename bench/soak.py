"""Stream churn: does one API process's memory stay bounded while desktops come and go all day?

Each round, agents start enquiries for citizens not seen before, open a live stream for each, receive
changes for a while, then complete every enquiry, which closes its stream, as a contact centre's desktops
do call after call. The API's resident memory is read at each round's peak and after its streams have
closed. What a round leaves behind shows as growth from round to round; the API's caches grow too until
they are full (their limits are in context/document_cache.py and context/summary_cache.py), so only the
later rounds tell a leak.

With `same_citizens`, every round streams the same citizens, which keeps new citizens' cached documents
out of the growth. After each round the API must have closed every stream as its enquiry was completed,
and count every stream closed (its `/metrics`), so a session that outlives its connection shows as well.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import access, fanout
from bench.live import live_run, wait_streams_closed
from bench.results import failure
from bench.stack import FigureStack, raise_fd_limit, rss_mb
from bench.stats import slope

# The growth is a slope over the later half of the rounds: two points at least.
MIN_ROUNDS = 4
# Changes per second over each round's watched citizens, as in the fan-out figure.
RATE_PER_S = fanout.RATE_PER_S


@dataclass(frozen=True)
class SoakRound:
    """One round: the streams it opened and what they received, the API's memory during and after it."""

    round: int
    streams: int
    failed: int  # streams that did not open
    ended: int  # streams the API closed once their enquiry was completed
    closed_early: int  # streams the API closed before the round's end for any other reason
    left_open: int  # streams the API still counted open a while after the round (bench.live.CLOSE_TIMEOUT_S)
    changes: int  # the producer's changes the streams received (not their enquiries' completions)
    peak_rss_mb: float
    rss_after_mb: float

    @property
    def clean(self) -> bool:
        """Every stream opened, lasted the round, ended with its enquiry and was counted closed."""
        return self.failed == self.closed_early == self.left_open == 0 and self.ended == self.streams


@dataclass
class Soak:
    """Every round of a run, the API's memory before the first, and what stopped the run early (if any)."""

    start_rss_mb: float
    rounds: list[SoakRound] = field(default_factory=list)
    error: str | None = None

    @property
    def growth_mb_per_round(self) -> float | None:
        """The API's memory growth per round over the later half of the rounds (None: too few rounds)."""
        after = [r.rss_after_mb for r in self.rounds]
        return growth_per_round(after) if len(after) >= MIN_ROUNDS else None

    @property
    def ok(self) -> bool:
        """The run went to its end, and every round was clean."""
        return self.error is None and all(r.clean for r in self.rounds)

    def to_json(self) -> dict[str, object]:
        """The run as a JSON document."""
        return {
            "start_rss_mb": self.start_rss_mb,
            "growth_mb_per_round": self.growth_mb_per_round,
            "error": self.error,
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
    """Run `rounds` rounds of `streams` streams, each fed changes at `rate_per_s` for `seconds`.

    A round that fails stops the run: the rounds before it are returned, with the error.
    """
    # Thousands of streams need as many open files in the API, which inherits this process's limit.
    say(f"open files limit: {raise_fd_limit()}")
    stack = FigureStack.create("soak", work_dir)
    try:
        stack.consumer()
        api = stack.api()
        soak = Soak(start_rss_mb=rss_mb(api.pid))
        say(f"API resident memory before the first round: {soak.start_rss_mb} MiB")
        for number in range(rounds):
            try:
                done = _round(stack, api.pid, number, streams, seconds, rate_per_s, same_citizens)
            except Exception as error:
                # The run reports what it measured, and why it stopped.
                soak.error = f"round {number + 1}: {failure(error)}"
                say(soak.error)
                break
            soak.rounds.append(done)
            say(json.dumps(asdict(done)))
        return soak
    finally:
        stack.close()


def _round(
    stack: FigureStack,
    api_pid: int,
    number: int,
    streams: int,
    seconds: float,
    rate_per_s: float,
    same_citizens: bool,
) -> SoakRound:
    citizens = round_citizens(number, streams, same_citizens=same_citizens)
    live = live_run(
        stack,
        watched=citizens,
        targets=citizens,
        rate_per_s=rate_per_s,
        duration_s=seconds,
        agents=access.agents_for(streams),
        sample_rss=True,
        complete_enquiries=True,
    )
    seen = live.seen
    left_open = wait_streams_closed(stack.api_url)
    return SoakRound(
        round=number + 1,
        streams=seen.opened,
        failed=seen.failed,
        ended=seen.ended,
        closed_early=seen.closed_early,
        left_open=left_open,
        changes=seen.messages.get("change", 0),
        peak_rss_mb=live.peak_rss_mb,
        rss_after_mb=rss_mb(api_pid),
    )
