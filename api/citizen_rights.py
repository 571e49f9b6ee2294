"""A citizen's rights: a copy of everything held about them, and erasure that a rebuild cannot undo."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.publisher import EventPublisher
from api.security.audit import Auditor
from context.store import CitizenEraser, ContextReader
from models import audit_repository, enquiry_repository
from models.audit_repository import AuditFilter
from models.enquiries import EnquiryPublic
from models.events import CloudEvent
from models.rights import CitizenExport, ErasureReceipt, RecordedView
from models.taxonomy import ERASURE_SOURCE, ERASURE_TYPE


async def export_citizen(
    citizen_id: str, *, reader: ContextReader, engine: Engine, auditor: Auditor
) -> CitizenExport:
    """Everything held about the citizen, in Redis and SQL, and every recorded view of it."""
    context = await reader.context(citizen_id)
    timeline = await reader.whole_timeline(citizen_id, epoch=context.epoch) if context.epoch else []
    identifiers = await reader.identifiers(citizen_id, epoch=context.epoch) if context.epoch else []
    pseudonym = auditor.pseudonym(citizen_id)

    def from_sql() -> tuple[list[EnquiryPublic], list[RecordedView]]:
        with Session(engine) as session:
            enquiries = [
                EnquiryPublic.model_validate(enquiry, from_attributes=True)
                for enquiry in enquiry_repository.citizen_enquiries(session, citizen_id=citizen_id)
            ]
            views = [
                RecordedView.model_validate(record, from_attributes=True)
                for record in audit_repository.iterate_records(session, where=AuditFilter(citizen=pseudonym))
            ]
        return enquiries, views

    enquiries, views = await run_in_threadpool(from_sql)
    return CitizenExport(
        citizen_id=citizen_id,
        generated_at=datetime.now(UTC),
        epoch=context.epoch,
        version=context.version,
        profile=context.profile,
        summary=context.summary,
        timeline=timeline,
        identifiers=identifiers,
        enquiries=enquiries,
        views=views,
    )


def erasure_event(citizen_id: str, *, at: datetime) -> CloudEvent:
    """The `citizen.erased` record: it stays in the topic, so replaying the citizen's past erases it again."""
    return CloudEvent(
        specversion="1.0",
        id=f"erasure-{uuid.uuid4()}",
        source=ERASURE_SOURCE,
        type=ERASURE_TYPE,
        subject=citizen_id,
        time=at,
        datacontenttype="application/json",
        data={"channel": "system", "summary": "The citizen's data was erased at their request."},
    )


async def erase_citizen(
    citizen_id: str,
    *,
    publisher: EventPublisher,
    eraser: CitizenEraser,
    engine: Engine,
    auditor: Auditor,
) -> ErasureReceipt:
    """Delete the citizen's enquiries from SQL, record the erasure in Kafka (so no rebuild brings the citizen
    back), then erase Redis.

    The enquiries go first, before the erasure's time is taken: an agent completing one of them after that
    time would publish its completion, notes and all, timed after the erasure, so applied and kept by every
    replay. Gone first, no enquiry can be completed after it; one completed before is timed before it, and
    the erasure mark keeps it out. Each step can be repeated: a retry after a failure finds less to remove
    and publishes another erasure record (harmless).
    """

    def from_sql() -> int:
        with Session(engine) as session:
            return enquiry_repository.delete_citizen_enquiries(session, citizen_id=citizen_id)

    enquiries_removed = await run_in_threadpool(from_sql)
    at = datetime.now(UTC)
    event = erasure_event(citizen_id, at=at)
    await publisher.publish([event])
    keys_removed = await eraser.erase(citizen_id, at=at)
    return ErasureReceipt(
        citizen=auditor.pseudonym(citizen_id),
        erased_at=at,
        erasure_event_id=event.id,
        keys_removed=keys_removed,
        enquiries_removed=enquiries_removed,
    )
