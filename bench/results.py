"""The figures of one run and the JSON they are written as (keys fixed, so runs compare over time)."""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Ingest:
    """One consumer process applying a pre-produced topic, against a bare poll loop over the same topic."""

    events: int
    events_per_s: float
    raw_poll_events_per_s: float
    ratio: float


@dataclass(frozen=True)
class Freshness:
    """Producer send -> agent's WebSocket, while `streams` are open and events arrive at `rate_per_s`."""

    rate_per_s: float
    streams: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class ContextRead:
    """GET context: open-loop latency at `rate_per_s`; closed-loop capacity against a trivial endpoint."""

    rate_per_s: float
    p50_ms: float
    p99_ms: float
    concurrency: int
    rps: float
    baseline_rps: float
    ratio: float


@dataclass(frozen=True)
class Fanout:
    """`connections` streams on one API process: its resident memory and the delivery p99."""

    connections: int
    rss_mb: float
    rate_per_s: float
    p99_ms: float


@dataclass(frozen=True)
class Memory:
    """Redis bytes per stored event against the event's JSON size."""

    bytes_per_event: float
    json_bytes_per_event: float
    ratio: float


@dataclass(frozen=True)
class Rebuild:
    """Replay throughput of `citizen-context rebuild`."""

    events_per_s: float


FIGURES = ("ingest", "freshness", "context_read", "fanout", "memory", "rebuild")
Figure = Ingest | Freshness | ContextRead | Fanout | Memory | Rebuild


@dataclass
class Run:
    """Every figure measured in one run (a figure that was not run, or failed, is absent)."""

    figures: dict[str, Figure] = field(default_factory=dict)
    # Raw latency samples (seconds) by distribution name, for the plots; never written to the JSON.
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    # Further observations by figure, for the report only (the JSON keeps its fixed keys).
    notes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The fixed-key document: one object per figure, in the order of FIGURES."""
        return {name: asdict(self.figures[name]) for name in FIGURES if name in self.figures}


def failure(error: BaseException) -> str:
    """An error as a run reports it: its type and the first line of its message, at most 300 characters."""
    first_line = next(iter(str(error).splitlines()), "")
    return f"{type(error).__name__}: {first_line[:300]}"


def write_json(document: dict[str, Any], path: Path) -> None:
    """Write a run's document as indented JSON, creating the file's folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
