"""Every Redis key and channel name of the project is built here, and only here."""

from dataclasses import dataclass


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
    def _base(self) -> str:
        return f"{self.prefix}:{self.epoch}:{{{self.citizen_id}}}"

    @property
    def timeline(self) -> str:
        """Sorted set of event keys, scored by the event's time in microseconds."""
        return f"{self._base}:timeline"

    @property
    def events(self) -> str:
        """Hash of event key -> the event's JSON."""
        return f"{self._base}:events"

    @property
    def meta(self) -> str:
        """Hash with the citizen's `version`."""
        return f"{self._base}:meta"

    @property
    def changes(self) -> str:
        """List of the latest changes (JSON, oldest first), for streams that resume."""
        return f"{self._base}:changes"

    def all(self) -> list[str]:
        """Every key, in the order the scripts expect them."""
        return [self.timeline, self.events, self.meta, self.changes]


def epoch_key(prefix: str) -> str:
    """The key holding the current generation (epoch) of the projection."""
    return f"{prefix}:epoch"


def changes_channel(prefix: str) -> str:
    """The pub/sub channel every change is published on; each API process subscribes once."""
    return f"{prefix}:changes"
