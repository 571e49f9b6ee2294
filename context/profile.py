"""Profile rules (pure): which fields a `profile.updated` event sets, and which update wins."""

from models.context import Profile
from models.events import CloudEvent
from models.taxonomy import EventData, ProfileUpdated, parse_data

PROFILE_FIELDS = tuple(Profile.model_fields)


def profile_fields(event: CloudEvent) -> dict[str, object]:
    """The profile fields `event` sets (only those present in its data); empty for other events."""
    return profile_from(parse_data(event.type, event.data))


def profile_from(data: EventData | None) -> dict[str, object]:
    """As `profile_fields`, from the event's data as `parse_data` gives it."""
    if not isinstance(data, ProfileUpdated):
        return {}
    present = data.model_dump(mode="json", include=set(PROFILE_FIELDS), exclude_unset=True)
    return {name: value for name, value in present.items() if value is not None}


def wins(candidate: tuple[int, str], current: tuple[int, str] | None) -> bool:
    """Whether an update at (time score, event key) replaces the one a field holds: the later one wins.

    Comparing the event time (and the event key on a tie) rather than arrival order means a late,
    older update never overwrites a newer one, whatever order Kafka delivers them in.
    """
    return current is None or candidate > current


def merge_profile(updates: list[tuple[tuple[int, str], dict[str, object]]]) -> Profile:
    """The profile that a set of updates ((time score, event key), fields) gives, in any order."""
    latest: dict[str, tuple[tuple[int, str], object]] = {}
    for stamp, fields in updates:
        for name, value in fields.items():
            if wins(stamp, latest[name][0] if name in latest else None):
                latest[name] = (stamp, value)
    return Profile.model_validate({name: value for name, (_stamp, value) in latest.items()})
