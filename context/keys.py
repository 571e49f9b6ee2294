"""Every Redis key and channel name of the project is built here, and only here."""

from dataclasses import dataclass


def citizen_base(prefix: str, epoch: str, citizen_id: str) -> str:
    """What every key of a citizen starts with (the apply script derives the keys from it)."""
    return f"{prefix}:{epoch}:{{{citizen_id}}}"


@dataclass(frozen=True, slots=True)
class CitizenKeys:
    """The keys of one citizen in one generation of the projection.

    They share the hash tag `{citizen_id}`, so one citizen's keys live in one Redis Cluster slot and a
    single script can update them all atomically.
    """

    prefix: str
    epoch: str
    citizen_id: str

    @property
    def base(self) -> str:
        """What every key of the citizen starts with (the apply script derives the keys from it)."""
        return citizen_base(self.prefix, self.epoch, self.citizen_id)

    @property
    def timeline(self) -> str:
        """Sorted set of event keys, scored by the event's time in microseconds."""
        return f"{self.base}:timeline"

    @property
    def events(self) -> str:
        """Hash of event key -> the event's JSON."""
        return f"{self.base}:events"

    @property
    def meta(self) -> str:
        """Hash with the citizen's `version`, and the last keep-alive period's stamp (`kept`)."""
        return f"{self.base}:meta"

    @property
    def changes(self) -> str:
        """List of the latest changes (JSON, oldest first), for streams that resume."""
        return f"{self.base}:changes"

    @property
    def facts(self) -> str:
        """Hash of event key -> that event's summary fact (JSON), for the events in the timeline."""
        return f"{self.base}:facts"

    @property
    def profile(self) -> str:
        """Hash of profile field -> its value (JSON)."""
        return f"{self.base}:profile"

    @property
    def profile_stamps(self) -> str:
        """Hash of profile field -> "score event-key" of the update that set it."""
        return f"{self.base}:profile-stamps"

    @property
    def identifiers(self) -> str:
        """Set of the identifiers ("kind:value") events have taught for this citizen."""
        return f"{self.base}:identifiers"

    def all(self) -> list[str]:
        """Every key (the apply script derives the same ones from `base`, in this order: SUFFIXES)."""
        return [
            self.timeline,
            self.events,
            self.meta,
            self.changes,
            self.facts,
            self.profile,
            self.profile_stamps,
            self.identifiers,
        ]

    def erasable(self) -> list[str]:
        """Every key that holds anything of the citizen (an erasure removes them all)."""
        return [*self.all(), presence_key(self.prefix, self.citizen_id)]

    def for_snapshot(self) -> list[str]:
        """The keys the snapshot script reads, in its order."""
        return [self.timeline, self.events, self.meta, self.facts, self.profile]


def erasure_mark_key(prefix: str, citizen_id: str) -> str:
    """String: when the citizen was last erased (a timeline score). The write path applies none of their
    events timed at or before it, whichever generation, partition, redrive or rebuild brings the event.

    It belongs to no generation (a rebuild must honour it), and carries the citizen's hash tag (one slot
    with the keys the apply script writes).
    """
    return f"{prefix}:erased:{{{citizen_id}}}"


def presence_key(prefix: str, citizen_id: str) -> str:
    """Sorted set of the streams viewing a citizen ("agent-id\tconnection-id"), scored by expiry time.

    Presence is about people, not about a generation of the projection, so it carries no epoch.
    """
    return f"{prefix}:presence:{{{citizen_id}}}"


def identifier_key(prefix: str, epoch: str, kind: str, value: str) -> str:
    """The identifier index entry for one normalised identifier -> citizen id.

    It carries the identifier's own hash tag: on Redis Cluster it lives in another slot than the
    citizen's keys, so it is written by its own command, before the event that teaches it is applied.
    """
    return f"{prefix}:{epoch}:identifier:{{{kind}:{value}}}"


def listed_identifier_key(prefix: str, epoch: str, member: str) -> str:
    """The index entry of an identifier as a citizen's identifiers set lists it ("kind:value")."""
    kind, _, value = member.partition(":")
    return identifier_key(prefix, epoch, kind, value)


def generation_pattern(prefix: str, epoch: str) -> str:
    """A SCAN pattern matching every key of one generation (for removing an old one)."""
    return f"{prefix}:{epoch}:*"


def unserved_generations_key(prefix: str) -> str:
    """Sorted set of the generations that hold keys but are not served: the one a rebuild is building (from
    before its first write), and the one it retires (until it has dropped it), scored by when the last of
    their keys expires (Unix seconds). An erasure reaches each of them besides the served one: a rebuild
    stopped before its switch, or before dropping the generation it replaced, leaves it behind until then.
    """
    return f"{prefix}:generations:unserved"


def redriven_key(prefix: str) -> str:
    """Sorted set of the dead-letter records already redriven ("topic/partition/offset/time"), so none goes
    twice, each scored by when it was redriven (Unix seconds)."""
    return f"{prefix}:dlq-redriven-until"


def legacy_redriven_key(prefix: str) -> str:
    """Set of the dead-letter records redriven by earlier versions, which kept them a year after the latest
    redrive: still read, so that an upgrade redrives none of them twice; never written."""
    return f"{prefix}:dlq-redriven"


def legacy_redrive_counts_key(prefix: str) -> str:
    """Hash of the records redriven by earlier versions, as they landed -> how many redrives each had been
    through: still read, so that a letter made of one is known for it; never written."""
    return f"{prefix}:dlq-redrive-landings"


def redrive_landings_key(prefix: str) -> str:
    """Sorted set of the records a redrive put in their topic, each as it landed there (events/deadletter.py
    `landing`), scored by when it was redriven (Unix seconds), so one dead-lettered again is known."""
    return f"{prefix}:dlq-landed-until"


def redrive_counts_key(prefix: str) -> str:
    """Hash: each landing in `redrive_landings_key` -> how many redrives its record has been through."""
    return f"{prefix}:dlq-redrive-counts"


def epoch_key(prefix: str) -> str:
    """The key holding the current generation (epoch) of the projection."""
    return f"{prefix}:epoch"


def changes_channel(prefix: str) -> str:
    """The pub/sub channel every change is published on; each API process subscribes once."""
    return f"{prefix}:changes"


def stream_ticket_key(prefix: str, ticket_digest: str) -> str:
    """A single-use stream ticket, by the SHA-256 of the ticket (the ticket itself is never stored)."""
    return f"{prefix}:stream-ticket:{ticket_digest}"


def rate_limit_prefix(prefix: str) -> str:
    """Where the rate limiter keeps its counters."""
    return f"{prefix}:rate"
