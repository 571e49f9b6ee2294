"""All Redis commands of the project: the atomic write path, identity lookups and consistent reads."""

import hashlib
import json
import math
import secrets
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any, NamedTuple, cast

import redis
import redis.asyncio as aioredis
from pydantic import TypeAdapter

from context.batching import CommandBatcher
from context.compact import EVENT_FRAGMENTS, FACT_FRAGMENTS
from context.document_cache import DocumentCache
from context.identity import IdentifierKind, forget_recent_numbers
from context.keys import (
    CitizenKeys,
    changes_channel,
    citizen_base,
    epoch_key,
    erasure_mark_key,
    generation_pattern,
    identifier_key,
    legacy_redrive_counts_key,
    legacy_redriven_key,
    listed_identifier_key,
    presence_key,
    rate_limit_prefix,
    redrive_counts_key,
    redrive_landings_key,
    redriven_key,
    stream_ticket_key,
    unserved_generations_key,
)
from context.service import EventWrite
from context.settings import SummarySettings, TimelineSettings
from context.streamed import Command, Sent, StreamedCommands, evalsha
from context.summary import FACTS, summarise, summary_changes_at, within_age_cap
from context.summary_cache import SummaryCache
from context.timeline import age_cutoff, time_score
from models.context import CitizenContext, ContextChange, Profile, Summary
from models.events import CloudEvent

_APPLY_EVENTS = files("context").joinpath("apply_events.lua").read_text()
_SNAPSHOT = files("context").joinpath("snapshot.lua").read_text()
# apply_events.lua's reply for an event Redis refused: {REFUSED_REPLY, kind of refusal}.
REFUSED_REPLY = -1
# The length of snapshot.lua's reply when the caller's stamp is still the citizen's: [version, stamp].
_UNCHANGED_REPLY = 2


class _Basis(NamedTuple):
    """What a kept context document was built from: the generation, the page size, the snapshot's stamp."""

    epoch: str
    limit: int | None
    stamp: str


_TIMELINE_PAGE = files("context").joinpath("timeline_page.lua").read_text()
_ERASE_CITIZEN = files("context").joinpath("erase_citizen.lua").read_text()
_FORGET_IDENTIFIER = files("context").joinpath("forget_identifier.lua").read_text()
_KEEP_ENTRIES_ALIVE = files("context").joinpath("keep_entries_alive.lua").read_text()
_RATE_LIMIT = files("context").joinpath("rate_limit.lua").read_text()
_PRESENCE_SWEEP = files("context").joinpath("presence_sweep.lua").read_text()
_PRESENCE_ENTER = files("context").joinpath("presence_enter.lua").read_text()
_CHANGES_SINCE = files("context").joinpath("changes_since.lua").read_text()

Identifier = tuple[IdentifierKind, str]


class IndexEntry(NamedTuple):
    """An identifier's index entry: the citizen it names, and the stamp of the teaching that set it."""

    citizen: str
    # (time score, event key) of the event that taught it: only a later one replaces it (apply_events.lua,
    # `teach`). None for an entry without a stamp, which any teaching replaces (the script writes both
    # fields together, so there is none unless written by hand).
    stamp: tuple[int, str] | None
    # The time (score) from which the identifier was an erased citizen's, whose refused teaching was later
    # than this entry's (apply_events.lua, `supersede`): events timed from then on are not found by it.
    superseded: int | None = None

    def holder_at(self, score: int) -> str | None:
        """The citizen an event timed at `score` that names only this identifier belongs to, if any."""
        if self.superseded is not None and score >= self.superseded:
            return None
        return self.citizen or None


def _index_stamp(stamp: str | None) -> tuple[int, str] | None:
    """An index entry's stamp ("score event-key", as apply_events.lua writes it) as (score, event key);
    None for none, or one the script did not write (as for an entry without one: any teaching replaces it)."""
    if stamp is None:
        return None
    score, _, event_key = stamp.partition(" ")
    try:
        return int(score), event_key
    except ValueError:
        return None


def _superseded(held: str | None) -> int | None:
    """An index entry's `superseded` (a score, as apply_events.lua writes it); None for none, or one the
    script did not write (the script drops such a value with the next teaching that wins)."""
    try:
        return int(held) if held is not None else None
    except ValueError:
        return None


def _foreign(reply: object) -> bool:
    """Whether a reply is Redis refusing a command for the type of the key's value (WRONGTYPE): a key the
    project did not write. The apply script refuses the event that meets it, which is dead-lettered
    (`refused`); reading around it, only the batch's resolving would fail, again and again."""
    return isinstance(reply, redis.exceptions.ResponseError) and str(reply).startswith("WRONGTYPE")


# Events applied by one call of the apply script. One call per event cost the writer more Python than
# the rest of its work; one call per batch would hold Redis for the whole batch (other clients wait while
# a script runs). A call of this many events takes Redis about a millisecond.
EVENTS_PER_CALL = 32

# A batch sent to the served generation as last read is applied again when a rebuild switched it since
# (ProjectionWriter.send_batch); one that finds it switched again this many times in a row fails, as Redis
# errors do (the consumer retries it with backoff).
MAX_GENERATION_SWITCHES = 3


class GenerationSwitching(redis.exceptions.ResponseError):
    """The served generation kept changing while a batch was being applied to it."""


# erase_citizen.lua's answer when the citizen was taught an identifier between the reading of their
# identifiers and the erasure (nothing was deleted): the erasure starts again, at most this many times.
IDENTIFIERS_CHANGED = -1
MAX_ERASURE_ATTEMPTS = 5


class ErasureOutpaced(redis.exceptions.ResponseError):
    """A citizen kept being taught identifiers while being erased (the erasure is to be tried again)."""

    def __init__(self, citizen_id: str) -> None:
        super().__init__(f"new identifiers kept arriving during {MAX_ERASURE_ATTEMPTS} attempts to erase")
        self.citizen_id = citizen_id


# apply_events.lua's kinds of refusal (an event Redis refuses, whatever the retries), each as a dead
# letter's detail says it: never Redis's message itself, which quotes the script's position, and could one
# day quote a value.
REFUSALS = {
    "WRONGTYPE": "Redis refused it: a key of its citizen, or an index entry it teaches, holds another type "
    "than the product writes there (WRONGTYPE)",
    "value": "Redis refused it: a value held for its citizen is not one the product writes there",
    "script": "Redis refused it: the apply script failed on this event",
}


# How long the API takes the served generation as read (a rebuild's announcement drops it at once).
EPOCH_MAX_AGE_S = 1.0

# The compact encodings a Redis serving the projection should be given (`services up` starts the local one
# with them; a production Redis needs them in its configuration, see README, Operations). A citizen's events
# hash holds up to `max_events` (200) values of a few hundred bytes, and the timeline as many members:
# beyond Redis's defaults (values of 64 bytes, sorted sets of 128 members) they turn into hash tables and
# skip lists, which cost 50 to 70 bytes more per entry than a listpack. Measured with 50 and 200 events per
# citizen, the apply script is no slower with them. Without them everything works the same, in more memory.
PROJECTION_REDIS_CONFIG = {
    "hash-max-listpack-entries": "512",
    "hash-max-listpack-value": "1024",
    "zset-max-listpack-entries": "256",
    "zset-max-listpack-value": "128",
}


def new_epoch() -> str:
    """A fresh generation name: sortable by creation time, unique."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class TimelinePosition:
    """Where an event sits in a timeline: its time score and its key (ties are broken by key)."""

    score: int
    key: str


@dataclass(frozen=True, slots=True)
class ContextJson:
    """A context ready to serve: its head (everything but the events), the whole JSON document, and a
    digest of the summary (which moves with time, so an ETag must name it besides the version)."""

    head: CitizenContext
    body: str
    summary_digest: str


_EMPTY_TIMELINE = '"timeline":[]}'


@dataclass(slots=True)  # not frozen: see events/records.py
class ApplyResult:
    """What applying one event did: whether it changed the context, and the version after it; or, when Redis
    refused it (apply_events.lua), the kind of refusal (a key of REFUSALS), and nothing changed but what
    applying it again would change the same way."""

    applied: bool
    version: int
    refused: str = ""


class ProjectionWriter:
    """Applies events to the projection (used by the consumer process, synchronous like kafka-python)."""

    def __init__(self, client: "redis.Redis", *, prefix: str, timeline: TimelineSettings) -> None:
        self._client = client
        self._prefix = prefix
        self._timeline = timeline
        self._apply = client.register_script(_APPLY_EVENTS)
        self._erase = client.register_script(_ERASE_CITIZEN)
        self._forget = client.register_script(_FORGET_IDENTIFIER)
        self._keep_entries_alive = client.register_script(_KEEP_ENTRIES_ALIVE)
        self._streamed = StreamedCommands(client, [self._apply])
        # The served generation as last read: writes without a generation of their own go to it, and the
        # apply script refuses them should a rebuild have switched it since (see send_batch).
        self._served: str | None = None

    @property
    def client(self) -> "redis.Redis":
        """The Redis client (for health checks)."""
        return self._client

    def current_epoch(self) -> str:
        """The generation being served, read now; created on first use."""
        key = epoch_key(self._prefix)
        # One round trip, on any Redis version.
        pipe = self._client.pipeline(transaction=False)
        pipe.set(key, new_epoch(), nx=True)
        pipe.get(key)
        self._served = cast(str, pipe.execute()[1])
        return self._served

    def switch_epoch(self, epoch: str) -> None:
        """Make `epoch` the generation readers and live writers use (the caller reads the previous one
        first: an answer naming it could be lost, and the switch sent again would name `epoch`)."""
        self._client.set(epoch_key(self._prefix), epoch)
        self._served = epoch

    def drop_generation(self, epoch: str) -> int:
        """Delete every key of a generation that is no longer served; returns how many."""
        removed = 0
        batch: list[str] = []
        for key in self._client.scan_iter(match=generation_pattern(self._prefix, epoch), count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += self._client.unlink(*batch)
                batch = []
        if batch:
            removed += self._client.unlink(*batch)
        return removed

    def hold_unserved(self, epoch: str) -> None:
        """List `epoch` among the generations that hold keys without being served, until every key written
        to it within the next HOLD_RENEWAL_S has expired: erasures reach it meanwhile (see
        `erase_everywhere`). A rebuild holds its generation before its first write, renews the hold while
        it writes, and holds the generation it retires until it has dropped it."""
        now = time.time()
        key = unserved_generations_key(self._prefix)
        pipe = self._client.pipeline(transaction=False)
        pipe.zremrangebyscore(key, "-inf", f"({int(now)}")  # holds whose generation has expired entirely
        pipe.zadd(key, {epoch: unserved_horizon(now + HOLD_RENEWAL_S, self._timeline)}, gt=True)
        pipe.execute()

    def release_unserved(self, epoch: str) -> None:
        """Take `epoch` off the unserved generations (it is served now, or dropped)."""
        self._client.zrem(unserved_generations_key(self._prefix), epoch)

    def unserved_generations(self) -> list[str]:
        """The generations held unserved whose keys may not all have expired yet."""
        pipe = self._client.pipeline(transaction=False)
        return cast(list[str], _queue_generations(pipe, self._prefix).execute()[1])

    def announce_epoch(self, epoch: str) -> None:
        """Tell every API process that the served generation changed, so open streams re-sync."""
        self._client.publish(changes_channel(self._prefix), json.dumps({"epoch": epoch}))

    def erasure_mark(self, citizen_id: str) -> int | None:
        """When the citizen was last erased (a timeline score), while the mark lasts; None if not, or if the
        key holds what no erasure wrote (the apply script refuses the citizen's events then)."""
        try:
            held = self._client.get(erasure_mark_key(self._prefix, citizen_id))
            return int(cast(str, held)) if held is not None else None
        except (redis.exceptions.ResponseError, ValueError) as error:
            if isinstance(error, redis.exceptions.ResponseError) and not _foreign(error):
                raise
            return None

    def resolve(self, identifiers: Iterable[Identifier], *, epoch: str) -> dict[Identifier, IndexEntry]:
        """The index entries of these identifiers: citizen and stamp (missing ones are left out)."""
        wanted = list(dict.fromkeys(identifiers))
        if not wanted:
            return {}
        pipe = self._client.pipeline(transaction=False)
        for kind, value in wanted:
            pipe.hmget(identifier_key(self._prefix, epoch, kind, value), "citizen", "stamp", "superseded")
        entries = {}
        for identifier, reply in zip(wanted, pipe.execute(raise_on_error=False), strict=True):
            if _foreign(reply):
                continue  # an entry the project did not write names nobody
            if isinstance(reply, Exception):
                raise reply
            citizen, stamp, superseded = reply
            if citizen:
                entries[identifier] = IndexEntry(citizen, _index_stamp(stamp), _superseded(superseded))
        return entries

    def apply_batch(
        self,
        writes: list[EventWrite],
        *,
        epoch: str | None = None,
        now: datetime | None = None,
        publish: bool = True,
        served: bool = False,
    ) -> list[ApplyResult]:
        """Apply the writes in order; each event's effect is atomic and idempotent.

        The commands go out as one stream of groups on one connection (context/streamed.py), one round
        trip for the run between two erasures. `publish=False` keeps the changes off the live channel: a
        rebuild fills a generation nobody watches yet, and announcing its changes would only make every
        stream re-sync over and over.
        """
        return self.send_batch(writes, epoch=epoch, now=now, publish=publish, served=served).results()

    def send_batch(
        self,
        writes: list[EventWrite],
        *,
        epoch: str | None = None,
        now: datetime | None = None,
        publish: bool = True,
        served: bool = False,
    ) -> "SentBatch":
        """As `apply_batch`, without waiting for Redis: `SentBatch.results()` reads the replies, and must
        follow before the next batch is sent (each batch waits for the one before). A batch with an
        erasure among its writes is applied before this returns (the erasure waits for the writes before
        it).

        Without an `epoch` (and without an erasure), the writes go to the served generation as last read,
        and each script call checks that it still is: reading it before every batch cost the consumer a
        round trip per batch (py-spy: 3.8 % of its main thread's time during ingest). A call that finds a
        rebuild switched it since changes nothing, and `results()` then applies the whole batch again to
        the generation now served (idempotent; what the calls before it wrote to the old one goes with
        it). A batch given its `epoch` and `served` (the consumer's, resolved in the generation served when
        it read the index) is checked the same way: written to a generation already retired, a retry's
        keys would outlive its drop, beyond an erasure's reach. A batch given its `epoch` alone (a
        rebuild's) goes to that generation unchecked. A batch with an erasure reads the generation when it
        has none.
        """
        if not writes:
            return SentBatch(list)
        if any(write.erase for write in writes):
            checked = served or not epoch
            epoch = epoch or self.current_epoch()
            applied = self._apply_with_erasures(writes, epoch=epoch, now=now, publish=publish, served=checked)
            return SentBatch(lambda: applied)
        if epoch:
            return self._send_run(writes, epoch=epoch, now=now, publish=publish, served=served)
        last_read = self._served or self.current_epoch()
        return self._send_run(writes, epoch=last_read, now=now, publish=publish, served=True)

    def _apply_with_erasures(
        self, writes: list[EventWrite], *, epoch: str, now: datetime | None, publish: bool, served: bool
    ) -> list[ApplyResult]:
        # An erasure cuts the batch: what came before it is applied first, then erased with the rest.
        results: list[ApplyResult] = []
        start = 0
        for index, write in enumerate(writes):
            if write.erase:
                results += self._apply_run(
                    writes[start:index], epoch=epoch, now=now, publish=publish, served=served
                )
                # The erasure read back from the topic: the API erased the citizen when it recorded it,
                # unless it failed part-way (see `erase_recorded`). Whatever is erased below, or not, the
                # numbers this process read lately go (as `erase` does).
                forget_recent_numbers()
                if publish:
                    self.erase_recorded(write.citizen_id, epoch=epoch, erased_at=write.score, now=now)
                elif self._erasure_due(write.citizen_id, epoch=epoch, erased_at=write.score, now=now):
                    # A rebuild's replay erases in its own generation only: an old erasure applied to
                    # another would remove the citizen's contacts since (the served one has them).
                    self.erase(write.citizen_id, epoch=epoch, erased_at=write.score, publish=False)
                results.append(ApplyResult(applied=True, version=0))
                start = index + 1
        return results + self._apply_run(writes[start:], epoch=epoch, now=now, publish=publish, served=served)

    def _apply_run(
        self, writes: list[EventWrite], *, epoch: str, now: datetime | None, publish: bool, served: bool
    ) -> list[ApplyResult]:
        """Apply writes without an erasure among them, in one round trip."""
        if not writes:
            return []
        return self._send_run(writes, epoch=epoch, now=now, publish=publish, served=served).results()

    def _send_run(
        self,
        writes: list[EventWrite],
        *,
        epoch: str,
        now: datetime | None,
        publish: bool,
        served: bool,
        switches_left: int = MAX_GENERATION_SWITCHES,
    ) -> "SentBatch":
        """Send the commands of writes without an erasure among them; the results are read later.
        `served`: `epoch` is the served generation as last read, which the script checks."""
        moment = now or datetime.now(UTC)
        cutoff = age_cutoff(now=moment, max_age=self._timeline.max_age)
        expiry = int(timedelta(days=self._timeline.inactivity_expiry_days).total_seconds())
        period = keep_alive_period(expiry)
        stamp = int(moment.timestamp()) // period
        # A citizen's keys expire at the end of this keep-alive period plus the inactivity expiry (so never
        # sooner than the expiry after its latest event), moved on once per period (apply_events.lua); the
        # identifier index entries one period later, and the set listing them later still.
        expires_at = (stamp + 1) * period + expiry
        entries_expire_at = expires_at + period
        identifiers_expire_at = expires_at + expiry
        channel = changes_channel(self._prefix) if publish else ""
        shared: list[str | int] = [
            self._timeline.max_events,
            cutoff,
            self._timeline.change_log_length,
            channel,
            json.dumps(epoch),
            expires_at,
            stamp,
            identifiers_expire_at,
            entries_expire_at,
            "1" if served else "",
            epoch,
        ]
        check = [epoch_key(self._prefix)] if served else []
        sent = self._streamed.send(self._write_commands(writes, epoch=epoch, shared=shared, check=check))

        def results() -> list[ApplyResult]:
            applied: list[ApplyResult] = []
            stale: set[str] = set()
            replies = sent.replies()
            if served and any(reply is None for reply in replies):
                # A rebuild switched the served generation since it was read: the whole batch goes to the
                # generation now served.
                if not switches_left:
                    raise GenerationSwitching(
                        f"the served generation changed during each of {MAX_GENERATION_SWITCHES + 1} attempts"
                    )
                again = self._send_run(
                    writes,
                    epoch=self.current_epoch(),
                    now=now,
                    publish=publish,
                    served=True,
                    switches_left=switches_left - 1,
                )
                return again.results()
            for reply in replies:
                *flat, identifiers = reply
                applied += (
                    ApplyResult(applied=False, version=0, refused=reply_text(version))
                    if done == REFUSED_REPLY
                    else ApplyResult(applied=bool(done), version=int(version))
                    for done, version in zip(flat[::2], flat[1::2], strict=True)
                )
                stale.update(identifiers)
            if stale:
                self._keep_alive(stale, epoch=epoch, expire_at=entries_expire_at, period=stamp)
            return applied

        return SentBatch(results, sent)

    def _write_commands(
        self, writes: list[EventWrite], *, epoch: str, shared: list[str | int], check: list[str]
    ) -> Iterator[list[Command]]:
        """The batch's script calls, each in a group of its own, built as they are sent; `check` holds the
        served generation's key when the script checks it (apply_events.lua)."""
        for start in range(0, len(writes), EVENTS_PER_CALL):
            run = writes[start : start + EVENTS_PER_CALL]
            keys = [citizen_base(self._prefix, epoch, write.citizen_id) for write in run]
            keys += [erasure_mark_key(self._prefix, write.citizen_id) for write in run]
            args: list[str | int] = [*shared, len(run)]
            for write in run:
                event = write.event
                args += (
                    event.dedup_key,
                    write.score,
                    EVENT_FRAGMENTS.compact(write.stored),
                    write.citizen_id,
                    write.fact,
                    len(write.profile),
                    len(write.identifiers),
                )
                for name, value in write.profile.items():
                    args += (name, value)
                for kind, value in write.identifiers:
                    # The index entry carries the identifier's own hash tag (another slot than the
                    # citizen's on Redis Cluster; see README, Architecture); the set lists it as "kind:value".
                    keys.append(identifier_key(self._prefix, epoch, kind, value))
                    args.append(f"{kind}:{value}")
            yield [evalsha(self._apply, keys + check, args)]

    def erase(
        self, citizen_id: str, *, epoch: str, erased_at: int | None = None, publish: bool = True
    ) -> int:
        """Remove everything held about a citizen in `epoch` (timeline, profile, identifiers, presence), and
        mark them erased as of `erased_at` (a timeline score; now when not given): none of their events
        timed at or before it is applied afterwards, in any generation."""
        moment = time_score(datetime.now(UTC)) if erased_at is None else erased_at
        plan = _Erasure.of(self._prefix, epoch, citizen_id, moment, self._timeline, publish=publish)
        for _attempt in range(MAX_ERASURE_ATTEMPTS):
            identifiers = sorted(cast(set[str], self._client.smembers(plan.keys.identifiers)))
            for key in plan.identifier_keys(identifiers):
                self._forget(keys=[key], args=[citizen_id])
            removed = int(self._erase(keys=plan.script_keys(identifiers), args=plan.args(identifiers)))
            if removed != IDENTIFIERS_CHANGED:
                forget_recent_numbers()
                return removed
        raise ErasureOutpaced(citizen_id)

    def erase_recorded(
        self, citizen_id: str, *, epoch: str, erased_at: int, now: datetime | None = None
    ) -> int:
        """Apply an erasure recorded in the topic (`citizen.erased`), as the consumer reads it back, in the
        served generation `epoch` and in those held unserved (as `erase_everywhere`): in each that still
        holds anything of the citizen's from before it (see `_erasure_due`); how many keys existed.

        The API erases the citizen when it records the erasure, so the record read back usually finds
        nothing of theirs from before it. Erasing again then would remove the contacts the citizen made
        since (events timed after the erasure, from other partitions, applied before this record), and
        move the mark on to the newest of them, so that no replay would ever apply them again. Where the
        API's erasure did not reach (it failed part-way, or a rebuild's replay of the record set the mark
        first), the record erases. A record older than its mark would last (`now` decides; see
        `_erasure_due`) erases only where something from before it is held.
        """
        mark = self.erasure_mark(citizen_id)
        if (mark is None or mark < erased_at) and not _erasure_outlived(erased_at, self._timeline, now):
            return self.erase_everywhere(citizen_id, epoch=epoch, erased_at=erased_at)
        removed = 0
        unchanged = [epoch, *sorted(self._other_generations(epoch))]
        while due := [
            g for g in unchanged if self._erasure_due(citizen_id, epoch=g, erased_at=erased_at, now=now)
        ]:
            # Erasing a generation moves the mark on to the newest event it held: those left are asked
            # again, against the mark as it is now, so that none keeps what that one lost.
            for generation in due:
                removed += self.erase(
                    citizen_id, epoch=generation, erased_at=erased_at, publish=generation == epoch
                )
                unchanged.remove(generation)
        return removed

    def _erasure_due(
        self, citizen_id: str, *, epoch: str, erased_at: int, now: datetime | None = None
    ) -> bool:
        """Whether an erasure as of `erased_at` (a timeline score) read back from the topic still has to
        erase in `epoch`: unless the citizen's erasure mark covers it and the generation holds nothing of
        theirs timed up to the mark (see `erase_recorded`).

        An erasure older than its mark would last (a genuine record published again, or kept by a topic
        whose retention exceeds the age cap) has no mark to go by: its own mark would have expired, and any
        later one is another erasure's. It erases where the generation holds something an event timed up
        to it wrote (profile fields and identifiers outlive the age cap); the citizen's contacts since,
        all that is held otherwise, are left alone.
        """
        if _erasure_outlived(erased_at, self._timeline, now):
            return self._holds_up_to(citizen_id, epoch=epoch, mark=erased_at)
        mark = self.erasure_mark(citizen_id)
        return mark is None or mark < erased_at or self._holds_up_to(citizen_id, epoch=epoch, mark=mark)

    def _holds_up_to(self, citizen_id: str, *, epoch: str, mark: int) -> bool:
        """Whether `epoch` holds anything of the citizen's that an event timed at or before `mark` wrote:
        an event of the timeline, a profile field, or an identifier (listed in their identifiers set, and
        its index entry gone or stamped up to the mark).

        Nothing timed up to a mark is applied once it is set (apply_events.lua), so what this finds was
        written before the mark, where an erasure has not reached yet; and it finds the same whenever it is
        asked, as later events only add what is timed after it. Only what is timed after the mark is held
        otherwise: the contacts the citizen made since their erasure.
        """
        keys = CitizenKeys(self._prefix, epoch, citizen_id)
        pipe = self._client.pipeline(transaction=False)
        pipe.zrange(keys.timeline, 0, 0, withscores=True)
        pipe.hvals(keys.profile_stamps)
        pipe.smembers(keys.identifiers)
        oldest, profile_stamps, identifiers = pipe.execute()
        if oldest and int(oldest[0][1]) <= mark:
            return True
        if any(_stamp_score(stamp) <= mark for stamp in profile_stamps):
            return True
        entries = self._client.pipeline(transaction=False)
        for member in sorted(identifiers):
            entries.hmget(listed_identifier_key(self._prefix, epoch, member), "citizen", "stamp")
        # An identifier the set lists counts unless its entry was taught after the mark: by a contact of
        # theirs since (the entry names them), or by someone else since, which leaves when the citizen
        # listed it open, so it is left alone (erasing here would remove their contacts since). An entry
        # gone (expired) or stamped up to the mark, whoever it names, says the listing came before.
        return any(stamp is None or _stamp_score(stamp) <= mark for _citizen, stamp in entries.execute())

    def erase_everywhere(self, citizen_id: str, *, epoch: str, erased_at: int | None = None) -> int:
        """As `erase` in the served generation `epoch`, then in every generation held unserved (a rebuild's,
        finished or not, and the one it retires); how many keys existed in all of them.

        `epoch` goes first: its erasure marks the citizen, so a rebuild that holds its generation only after
        the others were read applies none of their earlier events. The others are the generation served
        and those held unserved, read at one moment: a rebuild holds its generation until it is served, so
        no switch falls between the two (read apart, a switch and its release could, and the new generation
        was missed). The served one is among them when `epoch` is no longer it (a consumer's batch read the
        generation before a rebuild's switch).
        """
        moment = time_score(datetime.now(UTC)) if erased_at is None else erased_at
        removed = self.erase(citizen_id, epoch=epoch, erased_at=moment)
        for other in self._other_generations(epoch):
            removed += self.erase(citizen_id, epoch=other, erased_at=moment, publish=False)
        return removed

    def _other_generations(self, epoch: str) -> set[str]:
        """The generations besides `epoch` that may hold a citizen's keys: the one served and those held
        unserved, read at one moment (see `erase_everywhere`)."""
        pipe = self._client.pipeline(transaction=True)
        return generations_holding_keys(_queue_generations(pipe, self._prefix).execute()) - {epoch}

    def _keep_alive(self, identifiers: set[str], *, epoch: str, expire_at: int, period: int) -> None:
        """Extend the index entries of active citizens' identifiers ("citizen\nkind:value", as the apply
        script returns them), each only while it names that citizen, and mark the citizen's keep-alive
        done for the `period` (keep_entries_alive.lua): one step per citizen, in one pipeline."""
        listed: dict[str, list[str]] = {}
        for item in sorted(identifiers):
            citizen, _, member = item.partition("\n")
            listed.setdefault(citizen, []).append(listed_identifier_key(self._prefix, epoch, member))
        pipe = self._client.pipeline(transaction=False)
        for citizen, entries in listed.items():
            self._keep_entries_alive(
                keys=[CitizenKeys(self._prefix, epoch, citizen).meta, *entries],
                args=[citizen, expire_at, period],
                client=pipe,
            )
        pipe.execute()


def _stamp_score(stamp: str) -> float:
    """The time score of a stamp as apply_events.lua writes them ("score event-key"); minus infinity for a
    value no script wrote, which then counts as before any erasure (what it is, nothing can tell)."""
    try:
        return int(stamp.partition(" ")[0])
    except ValueError:
        return float("-inf")


def _queue_generations(pipe: Any, prefix: str) -> Any:
    """Queue the reads of the generation served and of those held unserved on `pipe` (a pipeline of either
    client); `generations_holding_keys` reads their replies."""
    now = int(time.time())
    return pipe.get(epoch_key(prefix)).zrangebyscore(unserved_generations_key(prefix), now, "+inf")


def generations_holding_keys(replies: Sequence[Any]) -> set[str]:
    """The generations that may hold a citizen's keys, from the replies `_queue_generations` queued (pure)."""
    served, unserved = replies
    return {*([served] if served else []), *unserved}


# How long a hold on an unserved generation covers the writes to come (ProjectionWriter.hold_unserved): a
# rebuild renews it at least this often while it writes.
HOLD_RENEWAL_S = 60


def unserved_horizon(written_until: float, timeline: TimelineSettings) -> int:
    """When every key written to a generation until `written_until` (Unix seconds) has expired (pure): the
    identifiers sets live longest, the inactivity expiry past the end of the keep-alive period after the
    citizen's keys (send_batch)."""
    expiry = int(timedelta(days=timeline.inactivity_expiry_days).total_seconds())
    return int(written_until) + keep_alive_period(expiry) + 2 * expiry


def erasure_mark_expiry(erased_at: int, timeline: TimelineSettings) -> int:
    """When an erasure's mark expires (Unix seconds; pure): once no record of the citizen from before it
    can still be replayed. The topic keeps records for the age cap at most (README, A citizen's rights),
    and a publisher may send one late; the inactivity expiry is the margin."""
    lasts = timedelta(days=timeline.max_age_days + timeline.inactivity_expiry_days)
    return erased_at // 1_000_000 + int(lasts.total_seconds())


def _erasure_outlived(erased_at: int, timeline: TimelineSettings, now: datetime | None) -> bool:
    """Whether an erasure (a timeline score) read back from the topic is older than its mark would last
    (pure; see `ProjectionWriter._erasure_due`)."""
    moment = datetime.now(UTC) if now is None else now
    return erasure_mark_expiry(erased_at, timeline) <= moment.timestamp()


class SentBatch:
    """A batch whose commands Redis has been sent; `results()` waits for it and says what each write did."""

    def __init__(self, finish: Callable[[], list[ApplyResult]], sent: Sent | None = None) -> None:
        self._finish = finish
        self._sent = sent

    def results(self) -> list[ApplyResult]:
        """What each write did, in order (reads Redis's replies; raises as `apply_batch` would)."""
        return self._finish()

    @property
    def connection_open(self) -> bool:
        """Whether its replies wait on an open connection (False once read, applied at once, or lost)."""
        return self._sent is not None and self._sent.connection is not None


@dataclass(frozen=True)
class _Erasure:
    """The keys and script arguments of one citizen's erasure (shared by the sync and async stores)."""

    prefix: str
    epoch: str
    citizen_id: str
    # When the citizen was erased (a timeline score), and when the mark saying so expires (Unix seconds).
    erased_at: int
    mark_expires_at: int
    publish: bool = True

    @classmethod
    def of(
        cls,
        prefix: str,
        epoch: str,
        citizen_id: str,
        erased_at: int,
        timeline: TimelineSettings,
        *,
        publish: bool = True,
    ) -> "_Erasure":
        """A citizen's erasure as of `erased_at` (a timeline score), its mark lasting as `timeline` says."""
        expires_at = erasure_mark_expiry(erased_at, timeline)
        return cls(prefix, epoch, citizen_id, erased_at, expires_at, publish=publish)

    @property
    def keys(self) -> CitizenKeys:
        return CitizenKeys(self.prefix, self.epoch, self.citizen_id)

    def script_keys(self, identifiers: Sequence[str]) -> list[str]:
        """erase_citizen.lua's keys: the erasure mark; the citizen's, the identifiers set first (the script
        checks it) and the timeline second (its newest event may move the mark on); then the index entries
        of `identifiers` (the script checks none names the citizen again)."""
        keys = self.keys
        first = [keys.identifiers, keys.timeline]
        own = [*first, *(key for key in keys.erasable() if key not in first)]
        return [erasure_mark_key(self.prefix, self.citizen_id), *own, *self.identifier_keys(identifiers)]

    def args(self, identifiers: Sequence[str]) -> list[str | int]:
        """The script's arguments, with the identifiers whose index entries were removed."""
        message = json.dumps({"citizen_id": self.citizen_id, "epoch": self.epoch, "erased": True})
        channel = changes_channel(self.prefix) if self.publish else ""
        return [
            channel,
            message,
            self.citizen_id,
            self.erased_at,
            self.mark_expires_at,
            len(identifiers),
            *identifiers,
        ]

    def identifier_keys(self, members: Iterable[str]) -> list[str]:
        return [listed_identifier_key(self.prefix, self.epoch, member) for member in members]


class CitizenEraser:
    """Erases a citizen at once (the API, on a citizen's request): from the served generation and from
    those held unserved."""

    def __init__(
        self, client: "aioredis.Redis", *, prefix: str, timeline: TimelineSettings | None = None
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._timeline = timeline or TimelineSettings()
        self._erase = client.register_script(_ERASE_CITIZEN)
        self._forget = client.register_script(_FORGET_IDENTIFIER)

    async def erase(self, citizen_id: str, *, at: datetime | None = None) -> int:
        """Remove everything held about the citizen in the served generation and in those held unserved,
        and mark them erased as of `at` (now when not given; see ProjectionWriter.erase_everywhere); how
        many keys existed."""
        # Before anything was ever written there is no generation, but streams may be open: they are
        # told all the same.
        epoch = cast(str | None, await self._client.get(epoch_key(self._prefix))) or ""
        moment = time_score(at or datetime.now(UTC))
        # The served generation first, then the others holding keys (as ProjectionWriter.erase_everywhere).
        removed = await self._erase_in(_Erasure.of(self._prefix, epoch, citizen_id, moment, self._timeline))
        pipe = self._client.pipeline(transaction=True)
        others = generations_holding_keys(await _queue_generations(pipe, self._prefix).execute()) - {epoch}
        for other in others:
            plan = _Erasure.of(self._prefix, other, citizen_id, moment, self._timeline, publish=False)
            removed += await self._erase_in(plan)
        return removed

    async def _erase_in(self, plan: "_Erasure") -> int:
        """One generation's erasure (as ProjectionWriter.erase); how many keys existed."""
        for _attempt in range(MAX_ERASURE_ATTEMPTS):
            identifiers = sorted(cast(set[str], await self._client.smembers(plan.keys.identifiers)))
            for key in plan.identifier_keys(identifiers):
                await self._forget(keys=[key], args=[plan.citizen_id])
            removed = int(await self._erase(keys=plan.script_keys(identifiers), args=plan.args(identifiers)))
            if removed != IDENTIFIERS_CHANGED:
                forget_recent_numbers()
                return removed
        raise ErasureOutpaced(plan.citizen_id)


def published_change(message: str | bytes) -> tuple[dict[str, Any], str]:
    """A message of the changes channel: its JSON, and the stored form of the change's event after a line
    feed ("" when none; apply_events.lua). Other messages (presence, erasures, a new generation) are JSON
    alone, as are changes published before events followed the JSON in their stored form."""
    head, _, stored_event = reply_text(message).partition("\n")
    return json.loads(head), stored_event


def change_of(message: dict[str, Any], stored_event: str) -> ContextChange:
    """The change a message of the changes channel announces (see `published_change`)."""
    if not stored_event:
        return ContextChange.model_validate(message)
    event = CloudEvent.model_validate_json(EVENT_FRAGMENTS.expand(stored_event))
    return ContextChange.model_validate({**message, "event": event})


def keep_alive_period(expiry_s: int) -> int:
    """How often an active citizen's expiries (its keys', its identifier entries') move on: daily at most."""
    return max(min(86_400, expiry_s // 10), 1)


class ContextReader:
    """Reads citizens' contexts for the API (asyncio)."""

    def __init__(
        self,
        client: "aioredis.Redis",
        *,
        prefix: str,
        timeline: TimelineSettings,
        summary: SummarySettings | None = None,
        batcher: CommandBatcher | None = None,
    ) -> None:
        self._client = client
        self._batcher = batcher or CommandBatcher(client)
        self._prefix = prefix
        self._timeline = timeline
        self._summary = summary or SummarySettings()
        self._summaries = SummaryCache()
        self._documents: DocumentCache[ContextJson] = DocumentCache()
        # Counts drops of kept documents (erasures, new generations, lost subscriptions), see context_json.
        self._forgotten = 0
        self._epoch: str | None = None
        self._epoch_read_at = 0.0
        self._snapshot = client.register_script(_SNAPSHOT)
        self._timeline_page = client.register_script(_TIMELINE_PAGE)
        self._changes_since = client.register_script(_CHANGES_SINCE)

    @property
    def channel(self) -> str:
        """The pub/sub channel that carries every change."""
        return changes_channel(self._prefix)

    async def timeline_slice(
        self,
        citizen_id: str,
        *,
        epoch: str,
        below: TimelinePosition | None,
        highest_score: int | None = None,
        lowest_score: int | None = None,
        count: int,
        past_the_age_cap: bool = False,
        now: datetime | None = None,
    ) -> list[tuple[TimelinePosition, CloudEvent]]:
        """Up to `count` events below `below` (or at most `highest_score`), newest first, with positions.

        Events past the age cap at `now` are left out (the write path removes them only with the citizen's
        next change), unless `past_the_age_cap`: an export gives everything still held.
        """
        keys = CitizenKeys(self._prefix, epoch, citizen_id)
        if not past_the_age_cap:
            cutoff = self._age_cutoff(now or datetime.now(UTC))
            lowest_score = cutoff if lowest_score is None else max(lowest_score, cutoff)
        reply: list[str | None] = await self._timeline_page(
            keys=[keys.timeline, keys.events],
            args=[
                below.score if below is not None else ("+inf" if highest_score is None else highest_score),
                "" if below is None else below.key,
                "-inf" if lowest_score is None else lowest_score,
                count,
            ],
        )
        positions, stored = [], []
        for i in range(0, len(reply), 3):
            key, score, event = reply[i], reply[i + 1], reply[i + 2]
            if key is not None and score is not None and event is not None:
                positions.append(TimelinePosition(int(float(score)), key))
                stored.append(event)
        # The page is expanded and validated in one call, not one per event.
        events = EVENTS.validate_json(EVENT_FRAGMENTS.expand(_json_array(stored)))
        return list(zip(positions, events, strict=True))

    async def current_epoch(self, *, fresh: bool = False) -> str:
        """The generation being served ("" before anything was ever written; reads never write).

        Read at most once a second (a round trip per read cost a tenth of a context read), and again at
        once after `forget_epoch`, which the API calls when a rebuild announces a new generation (or
        always, with `fresh`).
        """
        moment = time.monotonic()
        if not fresh and self._epoch is not None and moment - self._epoch_read_at < EPOCH_MAX_AGE_S:
            return self._epoch
        epoch = cast(str | None, await self._batcher.execute("GET", epoch_key(self._prefix))) or ""
        # "" (nothing written yet) is not kept: the first write creates a generation without announcing it.
        self._epoch, self._epoch_read_at = epoch or None, moment
        return epoch

    def forget_epoch(self) -> None:
        """Read the generation from Redis next time (it changed, or may have), and drop every kept document.

        The API calls it on a new generation and whenever its subscription was lost: erasures announced
        meanwhile never reached `forget_citizen`, so the recent phone numbers go too.
        """
        self._epoch = None
        self._forgotten += 1
        self._documents.clear()
        self._summaries.clear()
        forget_recent_numbers()

    @property
    def kept_summaries(self) -> int:
        """How many summaries this reader keeps in memory."""
        return len(self._summaries)

    def forget_citizen(self, citizen_id: str) -> None:
        """Drop the citizen's kept document, every kept summary and the recent phone numbers (erased:
        nothing of them is kept longer than needed; summaries are kept by their facts and numbers are
        linked to nobody, so all go, and erasures are rare). Every API replica does this on the erasure's
        announcement, the one that erased too."""
        self._forgotten += 1
        self._documents.forget(citizen_id)
        self._summaries.clear()
        forget_recent_numbers()

    def drop_old_documents(self, now: datetime | None = None) -> None:
        """Remove the documents kept longer than their maximum age (the API calls it every minute)."""
        self._documents.drop_older_than(now or datetime.now(UTC))

    async def context(
        self, citizen_id: str, *, limit: int | None = None, now: datetime | None = None
    ) -> CitizenContext:
        """The citizen's version, profile, summary and newest events, read atomically.

        A citizen the projection does not hold is an empty context at version 0.
        """
        moment = now or datetime.now(UTC)
        epoch, reply = await self._snapshot_of(citizen_id, limit=limit, now=moment)
        head, events, _until = self._head(citizen_id, epoch, reply, now=moment)
        return head.model_copy(update={"timeline": EVENTS.validate_json(EVENT_FRAGMENTS.expand(events))})

    async def context_json(
        self, citizen_id: str, *, limit: int | None = None, now: datetime | None = None
    ) -> ContextJson:
        """As `context`, already encoded as the JSON document the API serves.

        The events are spliced in as stored: the write path validated them and stored exactly their
        `to_json()` form, so parsing and re-encoding them on every read (most of a read's cost) would
        only reproduce the same bytes. The document is kept, and served again while the snapshot is equal
        and its summary holds (context/document_cache.py).
        """
        moment = now or datetime.now(UTC)
        forgotten = self._forgotten
        # Redis answers with the stamp alone when the kept document's still stands (snapshot.lua). Only
        # the stamp of a document that still holds at this moment is sent: an unchanged answer for one
        # that does not would cost a second round trip.
        held = self._documents.basis(citizen_id, now=moment)
        epoch, reply = await self._snapshot_of(
            citizen_id, limit=limit, now=moment, held=held if isinstance(held, _Basis) else None
        )
        basis = _Basis(epoch, limit, reply[-1])
        kept = self._documents.get(citizen_id, basis, now=moment)
        if kept is not None:
            return kept
        if len(reply) == _UNCHANGED_REPLY:
            # Unchanged, but the kept document went meanwhile (an erasure's announcement, a lost
            # subscription, or a read of another page size replacing it): read the whole snapshot.
            epoch, reply = await self._snapshot_of(citizen_id, limit=limit, now=moment)
            basis = _Basis(epoch, limit, reply[-1])
        head, events, until = self._head(citizen_id, epoch, reply, now=moment)
        encoded = head.model_dump_json()
        if not encoded.endswith(_EMPTY_TIMELINE):
            raise ValueError("CitizenContext must end with its timeline")  # a model change broke the splice
        body = encoded[: -len("[]}")] + EVENT_FRAGMENTS.expand(events) + "}"
        digest = hashlib.sha256(head.summary.model_dump_json().encode()).hexdigest()[:16]
        built = ContextJson(head=head, body=body, summary_digest=digest)
        # Counted at the document's real size, whatever its characters (its basis is a short stamp).
        size = sys.getsizeof(body)
        # An erasure (or a lost subscription) while the snapshot was read: the reply may predate it, and
        # must not be kept after the drop that came before it.
        if self._forgotten == forgotten:
            self._documents.put(citizen_id, basis, built, size=size, since=moment, until=until)
        return built

    async def _snapshot_of(
        self, citizen_id: str, *, limit: int | None, now: datetime, held: "_Basis | None" = None
    ) -> tuple[str, list[Any]]:
        """The generation read, and its snapshot reply at `now`: [version, profile (flat), facts, events,
        stamp] (the facts and events each as one JSON array of their stored forms; the events within the
        age cap, all facts), or only [version, stamp] when `held`, the basis of a kept document, has the
        same stamp."""
        epoch = await self.current_epoch()
        cutoff = self._age_cutoff(now)

        async def snapshot() -> list[Any]:
            known = held.stamp if held is not None and (held.epoch, held.limit) == (epoch, limit) else ""
            # Batched with the other reads of the moment (see context/batching.py): every desktop's hot path.
            return cast(
                list[Any],
                await self._batcher.run_script(
                    self._snapshot,
                    keys=CitizenKeys(self._prefix, epoch, citizen_id).for_snapshot(),
                    args=[limit or self._timeline.page_size, known, cutoff],
                ),
            )

        reply = await snapshot()
        if int(reply[0]) == 0:
            # Nothing held: a citizen unknown, or a generation just replaced by a rebuild (the epoch is
            # kept for up to a second). Only the latter reads again, from the new generation (the rebuild's
            # announcement, through the hub, drops the kept documents).
            self._epoch = None
            if (fresh := await self.current_epoch()) != epoch:
                epoch = fresh
                reply = await snapshot()
        return epoch, reply

    def _head(
        self, citizen_id: str, epoch: str, reply: list[Any], *, now: datetime
    ) -> tuple[CitizenContext, str, datetime | None]:
        """The context without its events, the stored events (newest first), and until when it holds."""
        version, profile, facts, events, _stamp = reply
        summary, until = self._summarise_until(facts, now=now)
        head = CitizenContext(
            citizen_id=citizen_id,
            epoch=epoch,
            version=int(version),
            profile=_profile(profile),
            summary=summary,
            timeline=[],
        )
        return head, events, until

    async def summary(self, citizen_id: str, *, epoch: str, now: datetime | None = None) -> Summary:
        """The citizen's summary as it stands now (for live streams, after each change)."""
        facts = await self._client.hvals(CitizenKeys(self._prefix, epoch, citizen_id).facts)
        summary, _until = self._summarise_until(
            _json_array(str(fact) for fact in facts), now=now or datetime.now(UTC)
        )
        return summary

    def _age_cutoff(self, now: datetime) -> int:
        """The time score below which events are past the age cap at `now`."""
        return age_cutoff(now=now, max_age=self._timeline.max_age)

    def _summarise_until(self, facts: str, *, now: datetime) -> tuple[Summary, datetime | None]:
        """The summary of the stored facts (one JSON array) at `now`, of the events within the age cap, and
        the first moment it changes."""
        recent_days = self._summary.recent_days
        max_age = self._timeline.max_age

        def compute(facts: str) -> tuple[Summary, datetime | None]:
            valid, leaves_at = within_age_cap(
                FACTS.validate_json(FACT_FRAGMENTS.expand(facts)), now=now, max_age=max_age
            )
            summary = summarise(
                valid,
                now=now,
                repeat_threshold=self._summary.repeat_contact_threshold,
                recent_days=recent_days,
            )
            changes_at = summary_changes_at(valid, now=now, recent_days=recent_days)
            return summary, min((at for at in (changes_at, leaves_at) if at is not None), default=None)

        return self._summaries.summary_until(facts, now=now, compute=compute)

    async def changes_since(self, citizen_id: str, *, epoch: str, version: int) -> list[ContextChange] | None:
        """Every change after `version`, in order; None when they are no longer all held."""
        keys = CitizenKeys(self._prefix, epoch, citizen_id)
        # The change log is short (a few hundred entries); reading it whole keeps this one round trip.
        reply: list[Any] = await self._changes_since(
            keys=[keys.changes, keys.events, keys.profile], args=[version]
        )
        newest = int(reply[0])
        # The profile as it stands, read once for every change that set profile fields (changes_since.lua).
        current = _profile(reply[1])
        missed = []
        for i in range(2, len(reply), 4):
            number, profile, event_key, event = int(reply[i]), reply[i + 1], reply[i + 2], reply[i + 3]
            if event_key and event is None:
                # The change's event has left the timeline since (count or age cap): it cannot be replayed.
                return None
            missed.append(
                ContextChange(
                    citizen_id=citizen_id,
                    epoch=epoch,
                    version=number,
                    event=CloudEvent.model_validate_json(EVENT_FRAGMENTS.expand(event))
                    if event_key
                    else None,
                    profile=current if profile else None,
                )
            )
        if newest < 0 or (missed and missed[0].version != version + 1):
            return None
        if not missed and newest and newest < version:
            # The client claims a version this generation never reached.
            return None
        return missed

    async def erasure_mark(self, citizen_id: str) -> str | None:
        """The citizen's erasure mark as held (context/erase_citizen.lua), while it lasts; None if none.
        Only an erasure sets or moves it."""
        held = await self._batcher.execute("GET", erasure_mark_key(self._prefix, citizen_id))
        return cast(str | None, held)

    async def version(self, citizen_id: str, *, epoch: str) -> int:
        """The citizen's current version in a generation (0 if it holds nothing for them)."""
        value = await self._client.hget(CitizenKeys(self._prefix, epoch, citizen_id).meta, "version")
        return int(value or 0)

    async def identifiers(self, citizen_id: str, *, epoch: str) -> list[str]:
        """The identifiers ("kind:value") the citizen's events gave, sorted: those that find them, and any
        since taken over by someone else."""
        found = await self._client.smembers(CitizenKeys(self._prefix, epoch, citizen_id).identifiers)
        return sorted(cast(set[str], found))

    async def whole_timeline(self, citizen_id: str, *, epoch: str) -> list[CloudEvent]:
        """Every event held for the citizen, newest first (an export; timelines are capped): those past the
        age cap that the write path has not removed yet too, as they are still held."""
        events: list[CloudEvent] = []
        below = None
        while True:
            page = await self.timeline_slice(
                citizen_id, epoch=epoch, below=below, count=500, past_the_age_cap=True
            )
            events.extend(event for _position, event in page)
            if len(page) < 500:
                return events
            below = page[-1][0]

    async def lookup(self, kind: IdentifierKind, value: str) -> str | None:
        """The citizen a normalised identifier belongs to, if the index knows it; not the one named by an
        entry an erased citizen's teaching superseded (IndexEntry.superseded): it is no longer theirs."""
        epoch = await self.current_epoch()
        citizen, superseded = await self._client.hmget(
            identifier_key(self._prefix, epoch, kind, value), "citizen", "superseded"
        )
        return None if superseded is not None else cast(str | None, citizen) or None


# A page of events is validated in one call (a JSON array built from the stored forms), not one per event.
EVENTS = TypeAdapter(list[CloudEvent])


def reply_text(reply: str | bytes) -> str:
    """A reply that is text, however the client was told to decode replies."""
    return reply.decode() if isinstance(reply, bytes) else reply


def _json_array(items: Iterable[str]) -> str:
    """Stored JSON values joined into one JSON array."""
    return "[" + ",".join(items) + "]"


def _profile(flat: list[str]) -> Profile:
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    return Profile.model_validate({name: json.loads(value) for name, value in fields.items()})


class PresenceStore:
    """Who is viewing which citizen: one entry per open stream, expiring unless refreshed.

    Entries are timed by Redis's clock, never a replica's (presence_sweep.lua).
    """

    def __init__(self, client: "aioredis.Redis", *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._sweep = client.register_script(_PRESENCE_SWEEP)
        self._enter = client.register_script(_PRESENCE_ENTER)

    async def join(self, citizen_id: str, *, viewer_id: str, connection_id: str, ttl_s: float) -> None:
        """Record an open stream and tell the other streams of this citizen."""
        await self._refresh(citizen_id, viewer_id=viewer_id, connection_id=connection_id, ttl_s=ttl_s)
        await self._announce(citizen_id)

    async def refresh(self, citizen_id: str, *, viewer_id: str, connection_id: str, ttl_s: float) -> None:
        """Keep an open stream's entry alive."""
        await self._refresh(citizen_id, viewer_id=viewer_id, connection_id=connection_id, ttl_s=ttl_s)

    async def leave(self, citizen_id: str, *, viewer_id: str, connection_id: str) -> None:
        """Remove a closed stream and tell the others."""
        await self._client.zrem(presence_key(self._prefix, citizen_id), f"{viewer_id}\t{connection_id}")
        await self._announce(citizen_id)

    async def viewers(self, citizen_id: str) -> list[tuple[str, str]]:
        """(viewer id, connection id) of every live stream of the citizen."""
        [live] = await self._sweep(keys=[presence_key(self._prefix, citizen_id)], args=[0, 0, 0])
        return _viewer_entries(live)

    async def keep_alive(
        self, members: Mapping[str, Collection[tuple[str, str]]], *, ttl_s: float
    ) -> dict[str, list[tuple[str, str]]]:
        """Extend the given streams' entries (citizen -> (viewer id, connection id)); every live viewer.

        One round trip for many citizens. Only entries still present are extended (`ZADD XX`): a stream
        that left while this was on its way must not come back as a ghost.
        """
        citizens = list(members)
        arguments: list[str | float | int] = [ttl_s, int(ttl_s) + 1]
        for citizen_id in citizens:
            arguments.append(len(members[citizen_id]))
            arguments.extend(f"{viewer}\t{connection}" for viewer, connection in members[citizen_id])
        keys = [presence_key(self._prefix, citizen_id) for citizen_id in citizens]
        replies = await self._sweep(keys=keys, args=arguments)
        viewers: dict[str, list[tuple[str, str]]] = {}
        for citizen_id, live in zip(citizens, replies, strict=True):
            viewers[citizen_id] = _viewer_entries(live)
        return viewers

    async def _refresh(self, citizen_id: str, *, viewer_id: str, connection_id: str, ttl_s: float) -> None:
        key = presence_key(self._prefix, citizen_id)
        await self._enter(keys=[key], args=[f"{viewer_id}\t{connection_id}", ttl_s, int(ttl_s) + 1])

    async def _announce(self, citizen_id: str) -> None:
        await self._client.publish(
            changes_channel(self._prefix), json.dumps({"citizen_id": citizen_id, "presence": True})
        )


def _viewer_entries(members: Iterable[str]) -> list[tuple[str, str]]:
    """Presence members (viewer id, a tab, connection id) as pairs; malformed ones are left out."""
    pairs = [member.split("\t", 1) for member in members]
    return [(pair[0], pair[1]) for pair in pairs if len(pair) == 2]


class RedriveLog:
    """Which dead-letter records were redriven already, and where each redriven record landed (kept in
    Redis: tools on any machine agree).

    Each entry lasts as long as what it speaks of can still be read: a redriven letter stays in the
    dead-letter topic for at most `retention` (the topics' retention, plus the day a segment may outlive
    it) after its redrive; a record a redrive put in its topic stays there as long, and a letter made of it
    as long again. Sorted sets scored by when each entry was made hold them, read against the retention of
    the day (an age cap raised since keeps earlier entries longer), and pruned at each redrive that sends a
    letter: the log never grows beyond what the topics hold.
    """

    def __init__(
        self,
        client: "redis.Redis",
        *,
        prefix: str,
        retention: timedelta,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._redriven = redriven_key(prefix)
        self._landed = redrive_landings_key(prefix)
        self._counts = redrive_counts_key(prefix)
        self._legacy = legacy_redriven_key(prefix)
        self._legacy_counts = legacy_redrive_counts_key(prefix)
        self._keep_s = retention.total_seconds()
        self._clock = clock

    def redriven(self, positions: list[str]) -> set[str]:
        """Those of `positions` that were redriven before."""
        if not positions:
            return set()
        pipe = self._client.pipeline(transaction=False)
        pipe.zmscore(self._redriven, positions)
        pipe.smismember(self._legacy, positions)
        made, legacy = pipe.execute()
        since = self._clock() - self._keep_s
        return {
            position
            for position, at, earlier in zip(positions, made, legacy, strict=True)
            if (at is not None and at > since) or earlier
        }

    def redrives_behind(self, landings: list[str]) -> dict[str, int]:
        """For those of `landings` (letters' records, events/deadletter.py `landing`) that a redrive put in
        their topic: how many redrives that record has been through. Its letter was dead-lettered again."""
        if not landings:
            return {}
        pipe = self._client.pipeline(transaction=False)
        pipe.zmscore(self._landed, landings)
        pipe.hmget(self._counts, landings)
        pipe.hmget(self._legacy_counts, landings)
        made, counts, legacy = pipe.execute()
        since = self._clock() - 2 * self._keep_s
        behind = {}
        for landing, at, count, earlier in zip(landings, made, counts, legacy, strict=True):
            if at is not None and at > since and count:
                behind[landing] = int(count)
            elif earlier:
                behind[landing] = int(earlier)
        return behind

    def mark(self, positions: list[str], *, landed: dict[str, int] | None = None) -> None:
        """Record `positions` as redriven, and their records as they `landed` (landing -> redrives so far);
        forget the entries whose time is over. A landing redriven again is kept until its own time is over:
        the letter made of it still shows how many redrives it came back after."""
        if not positions:
            return
        now = self._clock()
        keep_s, landed_keep_s = math.ceil(self._keep_s), math.ceil(2 * self._keep_s)
        over = self._client.zrangebyscore(self._landed, "-inf", now - 2 * self._keep_s)
        pipe = self._client.pipeline(transaction=True)
        pipe.zremrangebyscore(self._redriven, "-inf", now - self._keep_s)
        pipe.zadd(self._redriven, dict.fromkeys(positions, now))
        if over:
            pipe.zrem(self._landed, *over)
            pipe.hdel(self._counts, *over)
        if landed:
            pipe.zadd(self._landed, dict.fromkeys(landed, now))
            pipe.hset(self._counts, items=[part for pair in landed.items() for part in pair])
        # Each key outlives its latest entry, whichever process (and age cap) wrote it: set on a new key,
        # only ever lengthened after. Earlier versions' keys last no longer than their letters now can.
        for key, ttl_s in (
            (self._redriven, keep_s),
            (self._landed, landed_keep_s),
            (self._counts, landed_keep_s),
        ):
            pipe.expire(key, ttl_s, nx=True)
            pipe.expire(key, ttl_s, gt=True)
        pipe.expire(self._legacy, keep_s, lt=True)
        pipe.expire(self._legacy_counts, landed_keep_s, lt=True)
        pipe.execute()


class TicketStore:
    """Single-use stream tickets: stored for seconds under their digest, taken at most once."""

    def __init__(self, client: "aioredis.Redis", *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def _key(self, ticket: str) -> str:
        return stream_ticket_key(self._prefix, hashlib.sha256(ticket.encode()).hexdigest())

    async def issue(self, ticket: str, payload: str, *, ttl_s: int) -> None:
        """Store a new ticket's payload for `ttl_s` seconds."""
        await self._client.set(self._key(ticket), payload, ex=ttl_s, nx=True)

    async def take(self, ticket: str) -> str | None:
        """The ticket's payload, once: the ticket is gone afterwards (GETDEL is atomic)."""
        return cast(str | None, await self._client.getdel(self._key(ticket)))


class RateLimitStore:
    """Rate limits shared by every API process (GCRA, one Redis key per caller)."""

    def __init__(
        self, client: "aioredis.Redis", *, prefix: str, batcher: CommandBatcher | None = None
    ) -> None:
        self._batcher = batcher or CommandBatcher(client)
        self._prefix = prefix
        self._script = client.register_script(_RATE_LIMIT)

    async def take(self, caller_key: str, *, interval_us: int, tolerance_us: int) -> float:
        """Count one request; 0 when allowed, else the seconds to wait before the next one is."""
        # Batched with the other requests' limits of the moment (see context/batching.py).
        wait = await self._batcher.run_script(
            self._script,
            keys=[f"{rate_limit_prefix(self._prefix)}:{caller_key}"],
            args=[interval_us, tolerance_us],
        )
        return int(wait) / 1_000_000
