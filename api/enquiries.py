"""Enquiries: an agent starts one for a citizen, and completing it puts it on the citizen's timeline."""

import re
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.publisher import EventPublisher
from context.identity import IdentifierKind, InvalidIdentifier, normalise
from context.store import ContextReader
from models import enquiry_repository
from models.enquiries import EnquiryComplete, EnquiryCreate
from models.events import CloudEvent
from models.tables import Enquiry, EnquiryStatus
from models.taxonomy import ENQUIRY_SOURCE

# Enquiry ids are UUIDs as `str(uuid.uuid4())` writes them (models/enquiry_repository.py), in lower case. A
# UUID's hex digits may be given in either case (RFC 9562): an id is looked up in lower case.
ENQUIRY_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
ENQUIRY_ID = re.compile(ENQUIRY_ID_PATTERN)

# Wrap-up notes are text an agent types: tabs and line breaks, never other control characters (PostgreSQL
# refuses a NUL in text with an error, and the rest would reach every timeline and export as they are).
NOTES_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class EnquiryProblem(Exception):
    """An enquiry request that cannot be honoured: `status` and `detail` become problem details."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


async def resolve_citizen(request: EnquiryCreate, *, reader: ContextReader, default_region: str) -> str:
    """The citizen id the request names, directly or through the identifier index."""
    if request.citizen_id:
        return request.citizen_id
    kind, raw = next(
        (IdentifierKind(name), value)
        for name, value in (("phone", request.phone), ("email", request.email), ("case", request.case))
        if value
    )
    try:
        value = normalise(kind, raw, default_region=default_region)
    except InvalidIdentifier as error:
        raise EnquiryProblem(422, f"The {kind.value} is not valid: {error}.") from error
    citizen = await reader.lookup(kind, value)
    if citizen is None:
        raise EnquiryProblem(
            404, f"No citizen is known for this {kind.value}; start the enquiry by citizen id."
        )
    return citizen


async def start_enquiry(
    request: EnquiryCreate, *, agent_id: str, engine: Engine, reader: ContextReader, default_region: str
) -> Enquiry:
    """Resolve the citizen and record an active enquiry for the agent."""
    citizen_id = await resolve_citizen(request, reader=reader, default_region=default_region)

    def create() -> Enquiry:
        with Session(engine) as session:
            return enquiry_repository.create_enquiry(
                session, agent_id=agent_id, citizen_id=citizen_id, channel=request.channel
            )

    return await run_in_threadpool(create)


async def find_enquiry(enquiry_id: str, *, engine: Engine) -> Enquiry:
    """The enquiry, or a 404 problem."""
    if not ENQUIRY_ID.fullmatch(enquiry_id):
        # It names no enquiry, and need not reach SQL (PostgreSQL refuses a NUL in text with an error).
        raise EnquiryProblem(404, "No such enquiry.")
    enquiry_id = enquiry_id.lower()

    def get() -> Enquiry | None:
        with Session(engine) as session:
            return enquiry_repository.get_enquiry(session, enquiry_id=enquiry_id)

    enquiry = await run_in_threadpool(get)
    if enquiry is None:
        raise EnquiryProblem(404, "No such enquiry.")
    return enquiry


async def active_enquiries(*, agent_id: str, engine: Engine) -> list[Enquiry]:
    """The agent's active enquiries, newest first."""

    def query() -> list[Enquiry]:
        with Session(engine) as session:
            return enquiry_repository.active_enquiries(session, agent_id=agent_id)

    return await run_in_threadpool(query)


def completion_event(enquiry: Enquiry, completion: EnquiryComplete, *, at: datetime) -> CloudEvent:
    """The `enquiry.completed` event that puts a completed enquiry on the citizen's timeline."""
    summary = f"Enquiry by {enquiry.channel} completed: {completion.outcome}"
    return CloudEvent(
        specversion="1.0",
        # One id per enquiry: completing it again, or a retry, is the same event (deduplicated).
        id=f"enquiry-{enquiry.id}-completed",
        source=ENQUIRY_SOURCE,
        type="enquiry.completed",
        subject=enquiry.citizen_id,
        time=at,
        datacontenttype="application/json",
        data={
            "channel": enquiry.channel,
            "summary": summary,
            "enquiry_id": enquiry.id,
            "outcome": completion.outcome,
            **({"notes": completion.notes} if completion.notes else {}),
        },
    )


async def complete_enquiry(
    enquiry_id: str, completion: EnquiryComplete, *, agent_id: str, engine: Engine, publisher: EventPublisher
) -> Enquiry:
    """Claim the completion, publish `enquiry.completed`, then complete the enquiry; safe to retry.

    The enquiry is completed only once Kafka has acknowledged its event. A completed enquiry's streams end
    and it leaves the agent's list: completed before a publish that then failed (503), or before a crash,
    it would leave nothing to retry, and the event would be lost. Until then it stays active, so a retry
    finds it, and a crash after the publish is mended by a retry too.

    The outcome, notes and time are claimed first, with a conditional update, so concurrent requests cannot
    publish different completions (the projection keeps the first event of an id to arrive, which need not
    be what SQL holds). The event is built from the claim: a retry publishes exactly the same event again,
    which the projection keeps once. Another outcome or other notes is a conflict (409), also while the
    claimed completion is unacknowledged: Kafka may hold its event already.
    """
    enquiry = await find_enquiry(enquiry_id, engine=engine)
    if enquiry.agent_id != agent_id:
        raise EnquiryProblem(403, "Only the agent handling an enquiry can complete it.")
    enquiry_id = enquiry.id  # as stored (a UUID may be given in upper case)

    def claim() -> Enquiry | None:
        with Session(engine) as session:
            return enquiry_repository.claim_completion(
                session, enquiry_id=enquiry_id, outcome=completion.outcome, notes=completion.notes
            )

    claimed = await run_in_threadpool(claim)
    if claimed is None:
        claimed = await find_enquiry(enquiry_id, engine=engine)
        if (claimed.outcome, claimed.notes) != (completion.outcome, completion.notes):
            if claimed.status is EnquiryStatus.completed:
                raise EnquiryProblem(
                    409, "The enquiry is already completed, with another outcome or other notes."
                )
            raise EnquiryProblem(
                409,
                "The enquiry's completion was begun with another outcome or other notes and is not yet"
                " confirmed; complete it with those.",
            )
        if claimed.status is EnquiryStatus.completed:
            return claimed  # completed only after Kafka acknowledged its event: nothing to publish again
    recorded = EnquiryComplete(outcome=claimed.outcome or completion.outcome, notes=claimed.notes)
    at = claimed.completed_at or datetime.now(UTC)
    # SQLite hands timestamps back without their zone; they were written in UTC.
    event = completion_event(claimed, recorded, at=at if at.tzinfo else at.replace(tzinfo=UTC))
    await publisher.publish([event])

    def finish() -> Enquiry | None:
        with Session(engine) as session:
            return enquiry_repository.finish_completion(session, enquiry_id=enquiry_id)

    completed = await run_in_threadpool(finish)
    if completed is None:  # erased meanwhile
        raise EnquiryProblem(404, "No such enquiry.")
    return completed
