"""The audit trail over REST: filtered pages, or the whole selection as JSON Lines."""

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentCaller, EngineDep, SecurityDep, require
from api.problems import Problem, caller_problems
from api.query import QueryTime
from api.security import access
from models import audit_repository
from models.audit_repository import AuditFilter
from models.events import CITIZEN_ID_PATTERN
from models.security import AuditPage, AuditRecordPublic, PlainText
from models.tables import AuditAction, AuditRecord

router = APIRouter(prefix="/v1/audit", tags=["audit"])

JSON_LINES = "application/x-ndjson"
MAX_PAGE = 1000


def _in_utc(moment: datetime | None) -> datetime | None:
    """`moment` in UTC, as the trail stores and compares times; refused (422, naming the parameter) when
    that falls outside the years a date holds: `0001-01-01T00:00:00+01:00` is in the year 0 in UTC."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("datetime_range", "Must fall within the years 1 to 9999 in UTC") from None


# Checked with the other parameters, before the answer starts: a JSON Lines export sends its 200 first.
AuditTime = Annotated[QueryTime | None, AfterValidator(_in_utc)]


@router.get(
    "",
    response_model=AuditPage,
    summary="Read the audit trail",
    responses={
        200: {"content": {JSON_LINES: {"schema": {"type": "string"}}}},
        **caller_problems("Needs the admin role or the audit:read scope."),
        422: {"model": Problem, "description": "A filter is not valid."},
    },
)
async def read_audit(
    request: Request,
    caller: CurrentCaller,
    security: SecurityDep,
    engine: EngineDep,
    citizen_id: Annotated[
        str | None, Query(pattern=CITIZEN_ID_PATTERN, description="Only this citizen's records.")
    ] = None,
    actor: Annotated[
        PlainText | None, Query(max_length=200, description="Only this agent's or key's.")
    ] = None,
    action: AuditAction | None = None,
    since: AuditTime = None,
    until: AuditTime = None,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="Records after this id (paging).")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    format: Annotated[str, Query(pattern="^(json|jsonl)$", description="`jsonl`: all of it.")] = "json",
) -> AuditPage | StreamingResponse:
    """Oldest first. `format=jsonl` (or `Accept: application/x-ndjson`) exports every matching record.

    Citizens are named by pseudonym; filter by `citizen_id` and the pseudonym is computed for you.
    For admins, or keys with `audit:read`.
    """
    require(access.read_audit(caller))
    if since is not None and until is not None and until < since:
        # An empty selection would look like "nothing happened" to whoever audits.
        message = "must not be before since"
        raise RequestValidationError([{"type": "value_error", "loc": ("query", "until"), "msg": message}])
    where = AuditFilter(
        citizen=security.auditor.pseudonym(citizen_id) if citizen_id else None,
        actor_id=actor,
        action=action,
        since=since,
        until=until,
        after_id=after,
    )
    if format == "jsonl" or JSON_LINES in request.headers.get("accept", ""):
        # The first page is read before the answer starts, so a database failing then is still a 503, not
        # a 200 whose body stops: an auditor's tool could take that for the whole trail.
        first, following = await run_in_threadpool(_export_page, engine, where)
        return StreamingResponse(_json_lines(engine, first, following), media_type=JSON_LINES)

    def read() -> list[AuditRecordPublic]:
        with Session(engine) as session:
            records = audit_repository.read_records(session, where=where, limit=limit)
            return [AuditRecordPublic.model_validate(record, from_attributes=True) for record in records]

    records = await run_in_threadpool(read)
    return AuditPage(records=records, next_after=records[-1].id if len(records) == limit else None)


# Records an export reads at a time.
EXPORT_PAGE = 1000


def _export_page(engine: EngineDep, where: AuditFilter) -> tuple[list[str], AuditFilter | None]:
    """An export's first page as JSON Lines, and what selects the rest (None when there is no more)."""
    with Session(engine) as session:
        records = audit_repository.read_records(session, where=where, limit=EXPORT_PAGE)
        lines = [_json_line(record) for record in records]
    if len(records) < EXPORT_PAGE:
        return lines, None
    return lines, dataclasses.replace(where, after_id=records[-1].id or where.after_id)


def _json_lines(engine: EngineDep, first: list[str], following: AuditFilter | None) -> Iterator[str]:
    # A sync generator: Starlette runs it in a thread, one page of records at a time.
    yield from first
    if following is None:
        return
    with Session(engine) as session:
        for record in audit_repository.iterate_records(session, where=following, page=EXPORT_PAGE):
            yield _json_line(record)


def _json_line(record: AuditRecord) -> str:
    return AuditRecordPublic.model_validate(record, from_attributes=True).model_dump_json() + "\n"
