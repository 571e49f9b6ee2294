"""A citizen's rights over REST: a copy of everything held (export), and erasure."""

import functools

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from api import citizen_rights
from api.deps import CurrentCaller, EngineDep, EraserDep, PublisherDep, ReaderDep, SecurityDep, require
from api.problems import Problem, caller_problems, problem_response
from api.publisher import PublishUnavailable
from api.routes.citizens import AccessReason, CitizenIdPath
from api.security import access
from api.security.access import Decision
from api.security.authentication import SecurityServices
from api.security.principal import Caller
from models.rights import CitizenExport, ErasureReceipt
from models.tables import AuditAction

router = APIRouter(prefix="/v1/citizens", tags=["citizen rights"])

PROBLEMS: dict[int | str, dict[str, object]] = {
    **caller_problems("Needs the admin role or the key's scope."),
    422: {"model": Problem, "description": "The citizen id is not valid."},
    503: {"model": Problem, "description": "A store (Redis, Kafka, SQL) is unavailable; retry."},
}


async def _record(
    request: Request,
    security: SecurityServices,
    caller: Caller,
    decision: Decision,
    *,
    action: AuditAction,
    citizen_id: str,
    reason: str | None,
    failed: bool = False,
) -> None:
    if decision.allowed and reason:
        decision = Decision(allowed=True, reason=reason.strip()[: access.MAX_REASON] or None)
    await security.auditor.record(
        caller,
        action,
        decision,
        citizen_id=citizen_id,
        client_address=request.client.host if request.client else None,
        failed=failed,
    )


@router.get(
    "/{citizen_id}/export",
    response_model=CitizenExport,
    summary="Everything held about a citizen (right of access)",
    responses=PROBLEMS,
)
async def export_citizen(
    request: Request,
    citizen_id: CitizenIdPath,
    caller: CurrentCaller,
    security: SecurityDep,
    reader: ReaderDep,
    engine: EngineDep,
    reason: AccessReason = None,
) -> StreamingResponse:
    """Timeline, profile, summary, identifiers, enquiries, and every recorded view (this one included).

    For admins, or keys with `citizens:export`.
    """
    decision = access.export_citizen(caller)
    # Recorded before it is assembled: the export lists its own record among the views.
    await _record(
        request, security, caller, decision, action=AuditAction.export, citizen_id=citizen_id, reason=reason
    )
    require(decision)
    # Read but for the views past their first page, so that a store failing now is still answered (503).
    # The views are unbounded (years of a citizen's trail): the rest is read as it is sent, a page at a
    # time (api/citizen_rights.py), the document the same as `CitizenExport` (the schema above) encodes.
    export = await citizen_rights.export_citizen(
        citizen_id, reader=reader, engine=engine, auditor=security.auditor
    )
    return StreamingResponse(export.body(), media_type="application/json")


@router.delete(
    "/{citizen_id}",
    response_model=ErasureReceipt,
    summary="Erase a citizen (right to erasure)",
    responses={
        202: {
            "model": ErasureReceipt,
            "description": "Recorded in Kafka, but not removed from Redis: the consumer completes it.",
        },
        **PROBLEMS,
    },
)
async def erase_citizen(
    request: Request,
    citizen_id: CitizenIdPath,
    caller: CurrentCaller,
    security: SecurityDep,
    publisher: PublisherDep,
    eraser: EraserDep,
    engine: EngineDep,
    reason: AccessReason = None,
) -> ErasureReceipt | JSONResponse:
    """Remove the citizen from Redis and SQL, and record the erasure in Kafka so no rebuild restores them.

    The audit trail keeps its records, which name the citizen by pseudonym only. For admins, or keys with
    `citizens:erase`. Open streams of the citizen close (4411). Answered 202 (`recorded`) when Redis fails
    the removal once the erasure is recorded in Kafka: the consumer removes the context, and closes the
    streams, when it applies the record.
    """
    decision = access.erase_citizen(caller)
    record = functools.partial(
        _record,
        request,
        security,
        caller,
        decision,
        action=AuditAction.erasure,
        citizen_id=citizen_id,
        reason=reason,
    )
    if not decision.allowed:
        await record()
        require(decision)
    # Recorded once the outcome is known: an erasure that did not happen is recorded as failed.
    try:
        receipt = await citizen_rights.erase_citizen(
            citizen_id,
            publisher=publisher,
            eraser=eraser,
            engine=engine,
            auditor=security.auditor,
            signer=security.erasures,
        )
    except PublishUnavailable:
        await record(failed=True)
        # The enquiries went first (api/citizen_rights.py, erase_citizen): said, so nobody takes the
        # erasure for one that never started, and leaves it half done.
        response = problem_response(
            request,
            503,
            "Kafka did not acknowledge the erasure's record, so the citizen's context may not be erased "
            "(the record may still arrive, and erase it); their enquiries may have been deleted already. "
            "Retry: an erasure can be repeated.",
        )
        response.headers["Retry-After"] = "2"
        return response
    except Exception:
        await record(failed=True)
        raise
    # A recorded erasure is certain (the consumer completes it), so it is recorded as done, not failed.
    await record()
    if receipt.status == "recorded":
        return JSONResponse(receipt.model_dump(mode="json"), status_code=202)
    return receipt
