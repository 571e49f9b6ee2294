"""Rate limits per agent and per integrator key: `N/second|minute|hour`, bursts of up to N at once."""

import re
from dataclasses import dataclass

from api.security.principal import Caller
from context.store import RateLimitStore

_PERIODS = {"second": 1, "minute": 60, "hour": 3600}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)s?\s*$")


@dataclass(frozen=True)
class Rate:
    """A rate as GCRA sees it: one request per `interval_us`, a burst within `tolerance_us`."""

    interval_us: int
    tolerance_us: int


def parse_rate(text: str) -> Rate:
    """`20/second` -> one request every 50 ms, with a burst of 20 allowed."""
    match = _RATE.match(text)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"not a rate: {text!r} (expected e.g. '20/second' or '600/minute')")
    count, period_us = int(match.group(1)), _PERIODS[match.group(2)] * 1_000_000
    interval = period_us // count
    return Rate(interval_us=interval, tolerance_us=period_us - interval)


class RateLimiter:
    """Counts each caller's requests against its kind's rate."""

    def __init__(self, store: RateLimitStore, *, agent_rate: str, key_rate: str) -> None:
        self._store = store
        self._rates = {"agent": parse_rate(agent_rate), "integrator": parse_rate(key_rate)}

    async def wait_s(self, caller: Caller) -> float:
        """0 when the request may go ahead, else how long the caller should wait."""
        rate = self._rates[caller.kind]
        return await self._store.take(
            caller.rate_key, interval_us=rate.interval_us, tolerance_us=rate.tolerance_us
        )
