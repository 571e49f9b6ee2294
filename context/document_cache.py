"""Context documents already built, served again while what they were built from is unchanged.

A context read builds its document from the snapshot's reply: the profile parsed and validated, the summary
looked up, the head encoded, the events expanded and spliced in, the summary's digest for the ETag. That
was about a fifth of a read's CPU (see README, Benchmarks), and the same citizen is read again and again
with nothing changed. The document is a pure function of the citizen, the generation, the snapshot
(version, profile, facts, events) and the moment (the summary's windows). So the last document of each
citizen is kept with what it was built from (the generation, the page size and the snapshot's stamp), and
served again only while Redis finds that stamp still the citizen's (context/snapshot.lua), at a moment
within the interval its summary holds over.

The stamp is the version, the timeline's length and its newest event key, not the version alone: a
citizen erased (or expired) and written again starts over at version 1, with other data. Redis compares
it and answers with it alone, sparing itself and the API the whole snapshot of an unchanged citizen.

Personal data is kept no longer than needed: an entry is served for at most MAX_AGE after it was built,
and `drop_older_than` (which the API calls every minute, read or not) removes it from memory after that;
an erasure, a new generation or a lost subscription drops entries at once (context/store.py).
"""

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

# The most bytes of documents kept per process (a 50-event page's document is about 17 KB).
MAX_BYTES = 32 * 1024 * 1024
# How long a document may be served again, and kept, after it was built.
MAX_AGE = timedelta(minutes=5)
# What an entry costs beyond its strings (the head model, the tuples, the dictionary's slot): counted so
# that many small documents (unknown citizens) are bounded by the budget too.
ENTRY_OVERHEAD_BYTES = 4096

Document = TypeVar("Document")


@dataclass(frozen=True, slots=True)
class _Kept(Generic[Document]):
    basis: object
    since: datetime
    until: datetime | None
    document: Document
    size: int


class DocumentCache(Generic[Document]):
    """The last document built for each key, with what it was built from (its basis) and when it holds."""

    def __init__(self, max_bytes: int = MAX_BYTES, max_age: timedelta = MAX_AGE) -> None:
        self._entries: OrderedDict[str, _Kept[Document]] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._max_age = max_age

    def get(self, key: str, basis: object, *, now: datetime) -> Document | None:
        """The document built from an equal `basis` (what it was built from), if kept and holding at `now`."""
        kept = self._holding(key, now)
        if kept is None or kept.basis != basis:
            return None
        self._entries.move_to_end(key)
        return kept.document

    def basis(self, key: str, *, now: datetime) -> object:
        """What the document kept for `key` was built from, if it holds at `now` (None otherwise)."""
        kept = self._holding(key, now)
        return None if kept is None else kept.basis

    def _holding(self, key: str, now: datetime) -> "_Kept[Document] | None":
        """The entry kept for `key` if it holds at `now`; one past its maximum age is dropped."""
        kept = self._entries.get(key)
        if kept is not None and now >= kept.since + self._max_age:
            self.forget(key)
            return None
        if kept is None or not (kept.since <= now and (kept.until is None or now < kept.until)):
            return None
        return kept

    def put(
        self,
        key: str,
        basis: object,
        document: Document,
        *,
        size: int,
        since: datetime,
        until: datetime | None,
    ) -> None:
        """Keep `document` (about `size` bytes with its basis), built from `basis`, for [since, until)."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        size += ENTRY_OVERHEAD_BYTES
        if size > self._max_bytes:
            return
        self._entries[key] = _Kept(basis, since, until, document, size)
        self._bytes += size
        while self._bytes > self._max_bytes:
            _key, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size

    def forget(self, key: str) -> None:
        """Drop what is kept for `key`, if anything."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size

    def drop_older_than(self, now: datetime) -> None:
        """Remove every entry built MAX_AGE or longer before `now`."""
        for key in [key for key, kept in self._entries.items() if now >= kept.since + self._max_age]:
            self.forget(key)

    def clear(self) -> None:
        """Drop everything kept."""
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)
