"""One batch of records -> the writes to apply and the dead letters to publish.

Decoding and identity resolution happen here, in record order, so that an event that teaches an
identifier (a profile update with a phone number) lets a later event of the same batch that names the
citizen only by that number be resolved.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from context.identity import named_identifiers
from context.service import EventWrite, plan_judged
from context.store import REFUSALS, ApplyResult, Identifier, IndexEntry, ProjectionWriter
from events.codec import Decoded, InvalidEvent, decode_judged, future_horizon
from events.records import DeadLetter, KafkaRecord
from events.signing import UNVERIFIED, ErasureSigner
from models.taxonomy import ERASURE_TYPE


@dataclass
class PreparedBatch:
    """What a batch does: writes for the projection, letters for the dead-letter topic."""

    writes: list[EventWrite] = field(default_factory=list)
    # The record each write came from, in the same order: a write Redis refuses becomes its dead letter.
    sources: list[KafkaRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # The generation the writes go to: the one the identifiers were resolved in; "" when none had to be,
    # for the generation current when the batch is applied.
    epoch: str = ""


@dataclass
class DecodedBatch:
    """A batch's records judged on their own (no Redis read yet), and those that failed."""

    decoded: list[tuple[KafkaRecord, Decoded]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # Whether some event names its citizen only by an identifier (resolving it reads the index).
    needs_index: bool = False


def prepare_batch(
    records: Sequence[KafkaRecord],
    *,
    writer: ProjectionWriter,
    epoch: str,
    default_region: str,
    erasures: ErasureSigner,
) -> PreparedBatch:
    """Decode, validate and resolve every record of a batch (reads the identifier index once)."""
    return resolve_batch(
        decode_batch(records, default_region=default_region, erasures=erasures),
        writer=writer,
        epoch=epoch,
        default_region=default_region,
    )


def decode_batch(
    records: Sequence[KafkaRecord], *, default_region: str, erasures: ErasureSigner
) -> DecodedBatch:
    """Judge every record of a batch (pure: no Redis read); an erasure record is applied only with the
    API's signature (events/signing.py)."""
    batch = DecodedBatch()
    horizon = future_horizon()
    for record in records:
        try:
            judged = decode_judged(
                record.value, record.headers, default_region=default_region, horizon=horizon
            )
        except InvalidEvent as error:
            batch.dead_letters.append(DeadLetter(record, error.reason, error.detail))
            continue
        if judged.event.type == ERASURE_TYPE:
            problem = erasures.problem(judged.event)
            if problem is not None:
                batch.dead_letters.append(DeadLetter(record, UNVERIFIED, problem))
                continue
        batch.decoded.append((record, judged))
        if judged.event.subject is None:
            batch.needs_index = True
    return batch


def resolve_batch(
    batch: DecodedBatch, *, writer: ProjectionWriter, epoch: str, default_region: str
) -> PreparedBatch:
    """Resolve a decoded batch's citizens against the index (one read) and plan its writes, in order.

    The index must already hold every earlier batch's writes: callers that apply batches in the
    background wait for them first when `batch.needs_index`.
    """
    prepared = PreparedBatch(dead_letters=list(batch.dead_letters), epoch=epoch)
    decoded = batch.decoded
    wanted = {
        identifier
        for _record, judged in decoded
        if judged.event.subject is None
        for identifier in named_identifiers(judged.event, default_region=default_region)
    }
    if wanted and not epoch:
        raise ValueError("resolving identifiers needs the generation they are indexed in")
    known = writer.resolve(wanted, epoch=epoch)
    # What the batch's events have done to the index entries of `wanted` so far, as the apply script will do
    # it: an entry taught with its stamp, or None for one an erasure removed. Only the identifiers some event
    # is found by matter: learning any other would cost time and decide nothing.
    learned: dict[Identifier, IndexEntry | None] = {}
    # Citizens' erasure marks (the apply script teaches nothing for an event timed at or before one), read
    # only for a citizen whose event teaches an identifier some event is found by, or erased in the batch.
    marks: dict[str, int | None] = {}

    def erased_at(citizen_id: str) -> int | None:
        if citizen_id not in marks:
            marks[citizen_id] = writer.erasure_mark(citizen_id)
        return marks[citizen_id]

    for record, judged in decoded:
        event = resolved = judged.event
        stored_json: str | None = judged.stored
        # The identifiers an event without a subject was found by (none for one that names its citizen).
        identifiers: list[Identifier] = []
        if event.subject is None:
            identifiers = named_identifiers(event, default_region=default_region)
            citizen = _first_holder(identifiers, at=judged.score, known=known, learned=learned)
            if citizen is None:
                kinds = ", ".join(kind.value for kind, _value in identifiers)
                # The detail names the kind of identifier, never its value: headers end up in logs and tools.
                prepared.dead_letters.append(
                    DeadLetter(record, "unresolved-identity", f"no citizen is known for the {kinds} given")
                )
                continue
            resolved = event.model_copy(update={"subject": citizen})
            stored_json = None  # it now names the citizen: its stored form differs
        try:
            write = plan_judged(
                resolved, judged.data, default_region=default_region, stored=stored_json, score=judged.score
            )
        except Exception as error:
            prepared.dead_letters.append(
                DeadLetter(record, "undecodable", f"unexpected {type(error).__name__}")
            )
            continue
        if identifiers:
            # Found by the identifiers it names, the event asserts nothing about whose they are: it does not
            # teach them back (what its data teaches, a case reference say, it still does). Taught back with
            # its own, later time, one resolved to a number's previous owner (read before the newer owner's
            # profile update, from another partition) took the number back from the newer owner.
            write.identifiers = [taught for taught in write.identifiers if taught not in identifiers]
        if write.erase:
            # As erasing does in Redis, every entry that names the citizen goes, whether the index read
            # before the batch holds it or an earlier event of the batch taught it: an event that names
            # them only by an identifier must no longer find them (it would bring them back), nor the owner
            # an entry taken over in this batch had before (Redis no longer holds that one either). Where
            # the API's own step ran (the mark covers the erasure), one taught since the mark, by a contact
            # the citizen made after the erasure, stays, as the record read back leaves it in Redis
            # (ProjectionWriter.erase_recorded); otherwise the record erases every entry, whatever its stamp.
            held = erased_at(write.citizen_id)
            kept_after = held if held is not None and held >= write.score else None
            for identifier, entry in {**known, **learned}.items():
                if (
                    entry is not None
                    and entry.citizen == write.citizen_id
                    and (kept_after is None or entry.stamp is None or entry.stamp[0] <= kept_after)
                ):
                    learned[identifier] = None
            marks[write.citizen_id] = write.score if held is None else max(held, write.score)
        if any(identifier in wanted for identifier in write.identifiers):
            mark = erased_at(write.citizen_id)
            # An erased citizen's event teaches nothing; it only supersedes someone else's earlier entry.
            step = _teach if mark is None or write.score > mark else _supersede
            for identifier in write.identifiers:
                if identifier in wanted:
                    step(identifier, write, known=known, learned=learned)
        prepared.writes.append(write)
        prepared.sources.append(record)
    return prepared


# The dead-letter reason of an event Redis refused to apply (apply_events.lua, `refusal`).
REFUSED = "refused"


def refused_letters(batch: PreparedBatch, results: Sequence[ApplyResult]) -> list[DeadLetter]:
    """The dead letters of the batch's writes that Redis refused, given what applying each did (pure)."""
    return [
        DeadLetter(record, REFUSED, REFUSALS.get(result.refused, REFUSALS["script"]))
        for record, result in zip(batch.sources, results, strict=True)
        if result.refused
    ]


def _first_holder(
    identifiers: list[Identifier],
    *,
    at: int,
    known: dict[Identifier, IndexEntry],
    learned: dict[Identifier, IndexEntry | None],
) -> str | None:
    """The citizen an event timed at `at` belongs to by the first of `identifiers` whose index entry, as the
    batch has left them, names one then (IndexEntry.holder_at)."""
    for identifier in identifiers:
        entry = _as_left(identifier, known=known, learned=learned)
        holder = entry.holder_at(at) if entry is not None else None
        if holder is not None:
            return holder
    return None


def _as_left(
    identifier: Identifier,
    *,
    known: dict[Identifier, IndexEntry],
    learned: dict[Identifier, IndexEntry | None],
) -> IndexEntry | None:
    """An identifier's index entry as the batch has left it so far (None: none, or erased)."""
    return learned[identifier] if identifier in learned else known.get(identifier)


def _teach(
    identifier: Identifier,
    write: EventWrite,
    *,
    known: dict[Identifier, IndexEntry],
    learned: dict[Identifier, IndexEntry | None],
) -> None:
    """Point `identifier` at the write's citizen unless a later teaching holds it (apply_events.lua, `teach`).

    The later (time score, event key) wins, whatever the order the events come in: the index the next batch
    reads says so, and resolving within this batch must not depend on where one batch ends.
    """
    held = _as_left(identifier, known=known, learned=learned)
    stamp = (write.score, write.event.dedup_key)
    if held is None or held.stamp is None or stamp > held.stamp:
        # The entry stays superseded from a later time only (apply_events.lua, `teach`).
        superseded = held.superseded if held is not None else None
        kept = superseded if superseded is not None and superseded > write.score else None
        learned[identifier] = IndexEntry(write.citizen_id, stamp, kept)


def _supersede(
    identifier: Identifier,
    write: EventWrite,
    *,
    known: dict[Identifier, IndexEntry],
    learned: dict[Identifier, IndexEntry | None],
) -> None:
    """What an erased citizen's refused teaching does (apply_events.lua, `supersede`): someone else's entry
    taught earlier is superseded from the write's time on (the earliest such time)."""
    held = _as_left(identifier, known=known, learned=learned)
    stamp = (write.score, write.event.dedup_key)
    if held is None or held.citizen == write.citizen_id or (held.stamp is not None and stamp <= held.stamp):
        return
    if held.superseded is None or write.score < held.superseded:
        learned[identifier] = held._replace(superseded=write.score)
