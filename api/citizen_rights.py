"""A citizen's rights: a copy of everything held about them, and erasure that a rebuild cannot undo."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import redis.exceptions
import structlog
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.publisher import EventPublisher
from api.security.audit import Auditor
from context.store import CitizenEraser, ContextReader
from events.signing import ErasureSigner
from models import audit_repository, enquiry_repository
from models.audit_repository import AuditFilter
from models.enquiries import EnquiryPublic
from models.events import CloudEvent
from models.rights import CitizenExport, ErasureReceipt, RecordedView
from models.taxonomy import ERASURE_SOURCE, ERASURE_TYPE

log = structlog.get_logger("api")

# Audit records an export reads, encodes and sends at a time: what one export holds in memory of the
# citizen's trail, however many years of views it spans.
VIEWS_PER_PAGE = 1000

# How the export's JSON ends while its views are empty: the views are written in their place as they are
# read, so `views` must stay the document's last field.
_EMPTY_VIEWS = '"views":[]}'
_VIEWS_CLOSE = b"]}"


class ExportCutShort(Exception):
    """The audit trail failed after the export's first bytes were sent, with its status (200): the body is
    left without its close and the connection dropped, so no client takes it for the whole export."""


@dataclass(frozen=True)
class _ViewsPage:
    """One page of the citizen's audit records, encoded as the items of a JSON array (comma-separated)."""

    encoded: bytes
    count: int
    following: AuditFilter | None  # the records after this page; None when this page was the last


def _read_views_page(engine: Engine, where: AuditFilter, *, limit: int) -> _ViewsPage:
    """Records of `where` (oldest first, at most `limit`), in a session of their own, encoded as
    `CitizenExport` encodes each of its `views`."""
    with Session(engine) as session:
        records = audit_repository.read_records(session, where=where, limit=limit)
        encoded = b",".join(
            RecordedView.model_validate(record, from_attributes=True).model_dump_json().encode()
            for record in records
        )
    # Paged by id, as the trail is read everywhere: a record added meanwhile is found in a later page.
    last_id = records[-1].id if len(records) == limit else None
    return _ViewsPage(
        encoded=encoded,
        count=len(records),
        following=replace(where, after_id=last_id) if last_id is not None else None,
    )


@dataclass(frozen=True)
class CitizenExportStream:
    """An export read but for its views past the first page: `body()` writes the JSON document, byte for
    byte as `CitizenExport.model_dump_json()` would, and reads the rest of the views as it goes."""

    engine: Engine
    opening: bytes  # the document up to its views, and their first page
    views_in_opening: int
    views_after_opening: AuditFilter | None
    views_per_page: int

    async def body(self) -> AsyncIterator[bytes]:
        """The document in pieces: each page of views is read (in a session of its own, in a worker thread)
        once the one before has been handed to the server, so an export holds one page of them at a time."""
        yield self.opening
        sent = self.views_in_opening
        where = self.views_after_opening
        while where is not None:
            try:
                page = await run_in_threadpool(
                    _read_views_page, self.engine, where, limit=self.views_per_page
                )
            except Exception as error:
                # The status (200) is sent: all that is left to say is that the body is not whole. Raised,
                # not returned: the server then drops the connection before the chunked body's end, which
                # HTTP clients report as an error, where a clean end would pass for a whole export to any
                # client that does not parse it. The log names neither the citizen nor the query (a
                # database error quotes it), and `from None` keeps that error out of any traceback.
                log.error("citizen export cut short", error=type(error).__name__, views_sent=sent)
                raise ExportCutShort from None
            if page.count:
                yield (b"," if sent else b"") + page.encoded
                sent += page.count
            where = page.following
        yield _VIEWS_CLOSE


async def export_citizen(
    citizen_id: str, *, reader: ContextReader, engine: Engine, auditor: Auditor
) -> CitizenExportStream:
    """Everything held about the citizen, in Redis and SQL, and every recorded view of it.

    All of it but the views past their first page is read here, before anything is sent: a store failing
    meanwhile is still answered (503), and an export whose views fit in one page is sent whole or not at all.
    """
    context = await reader.context(citizen_id)
    timeline = await reader.whole_timeline(citizen_id, epoch=context.epoch) if context.epoch else []
    identifiers = await reader.identifiers(citizen_id, epoch=context.epoch) if context.epoch else []
    views_per_page = VIEWS_PER_PAGE

    def enquiries_from_sql() -> list[EnquiryPublic]:
        with Session(engine) as session:
            return [
                EnquiryPublic.model_validate(enquiry, from_attributes=True)
                for enquiry in enquiry_repository.citizen_enquiries(session, citizen_id=citizen_id)
            ]

    enquiries = await run_in_threadpool(enquiries_from_sql)
    first_views = await run_in_threadpool(
        _read_views_page, engine, AuditFilter(citizen=auditor.pseudonym(citizen_id)), limit=views_per_page
    )
    document = CitizenExport(
        citizen_id=citizen_id,
        generated_at=datetime.now(UTC),
        epoch=context.epoch,
        version=context.version,
        profile=context.profile,
        summary=context.summary,
        timeline=timeline,
        identifiers=identifiers,
        enquiries=enquiries,
        views=[],
    ).model_dump_json()
    if not document.endswith(_EMPTY_VIEWS):
        raise ValueError("CitizenExport must end with its views")  # a model change broke the streaming
    return CitizenExportStream(
        engine=engine,
        opening=document[: -len(_VIEWS_CLOSE)].encode() + first_views.encoded,
        views_in_opening=first_views.count,
        views_after_opening=first_views.following,
        views_per_page=views_per_page,
    )


def erasure_event(citizen_id: str, *, at: datetime, signer: ErasureSigner) -> CloudEvent:
    """The `citizen.erased` record: it stays in the topic, so a replay of the citizen's past meets it, and the
    erasure mark it leaves refuses their earlier events (context/store.py, `erase_recorded`)."""
    unsigned = CloudEvent(
        specversion="1.0",
        id=f"erasure-{uuid.uuid4()}",
        source=ERASURE_SOURCE,
        type=ERASURE_TYPE,
        subject=citizen_id,
        time=at,
        datacontenttype="application/json",
        data={"channel": "system", "summary": "The citizen's data was erased at their request."},
    )
    # Signed: the consumer and every rebuild apply an erasure record only with the API's signature.
    return signer.signed(unsigned)


async def erase_citizen(
    citizen_id: str,
    *,
    publisher: EventPublisher,
    eraser: CitizenEraser,
    engine: Engine,
    auditor: Auditor,
    signer: ErasureSigner,
) -> ErasureReceipt:
    """Delete the citizen's enquiries from SQL, record the erasure in Kafka (so no rebuild brings the citizen
    back), then erase Redis. Once the record is in Kafka the erasure is certain: when Redis fails the last
    step, the receipt says `recorded`, and the consumer erases the context when it applies the record (it
    carries out a record whose erasure did not reach Redis, context/store.py `erase_recorded`).

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
    event = erasure_event(citizen_id, at=at, signer=signer)
    await publisher.publish([event])
    pseudonym = auditor.pseudonym(citizen_id)
    keys_removed: int | None
    try:
        keys_removed = await eraser.erase(citizen_id, at=at)
    except redis.exceptions.RedisError as error:
        # Whatever Redis answered (unavailable, or an error of its own), the record will erase.
        log.warning(
            "erasure recorded, its context left to the consumer",
            citizen=pseudonym,
            error=type(error).__name__,
        )
        keys_removed = None
    return ErasureReceipt(
        citizen=pseudonym,
        status="erased" if keys_removed is not None else "recorded",
        erased_at=at,
        erasure_event_id=event.id,
        keys_removed=keys_removed,
        enquiries_removed=enquiries_removed,
    )
