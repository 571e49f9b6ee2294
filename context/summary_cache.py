"""Summaries already computed, kept while they still hold.

A summary is a pure function of the citizen's facts and of the moment it is read (see
`context.summary`). Validating and summarising a hundred facts was a third of a context read's cost (see
README, Benchmarks), and the same facts are summarised again and again: every read of the citizen, and
every change sent to each stream watching them. So the summary is kept under a digest of the facts it
came from and reused until `summary_changes_at`: the cache is exact, never stale. A new or removed fact
changes the digest; an erased citizen's facts are gone, so no entry is ever found for them again. Their
summary would still sit in memory until pushed out, though (its open cases, payments and appointments):
the reader clears the cache on every erasure and every new generation, as it drops its kept documents.
"""

import hashlib
import threading
from collections.abc import Callable
from datetime import datetime

from cachetools import LRUCache

from models.context import Summary

# Summaries kept per process (each a few hundred bytes, plus its 16-byte digest).
MAX_SUMMARIES = 20_000


class SummaryCache:
    """Summaries by the digest of their facts, each with the interval of time over which it holds."""

    def __init__(self, maxsize: int = MAX_SUMMARIES) -> None:
        self._entries: LRUCache[bytes, tuple[Summary, datetime, datetime | None]] = LRUCache(maxsize)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many summaries are kept."""
        return len(self._entries)

    def clear(self) -> None:
        """Forget every summary (kept by the digest of their facts, so not to be found by citizen)."""
        with self._lock:
            self._entries.clear()

    def summary(
        self,
        facts: str,
        *,
        now: datetime,
        compute: Callable[[str], tuple[Summary, datetime | None]],
    ) -> Summary:
        """The summary of `facts` (stored forms, as one JSON array) at `now`: kept, or `compute`d and kept."""
        return self.summary_until(facts, now=now, compute=compute)[0]

    def summary_until(
        self,
        facts: str,
        *,
        now: datetime,
        compute: Callable[[str], tuple[Summary, datetime | None]],
    ) -> tuple[Summary, datetime | None]:
        """As `summary`, with the first moment after `now` it changes (None: never, as time alone goes)."""
        digest = hashlib.blake2b(facts.encode(), digest_size=16).digest()
        with self._lock:
            kept = self._entries.get(digest)
        if kept is not None:
            summary, since, until = kept
            if since <= now and (until is None or now < until):
                return summary, until
        summary, until = compute(facts)
        with self._lock:
            self._entries[digest] = (summary, now, until)
        return summary, until
