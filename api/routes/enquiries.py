"""Enquiries: start one for a citizen, list mine, complete one."""

from fastapi import APIRouter, Path, Request, Response, WebSocket, status
from fastapi.responses import JSONResponse

from api import enquiries
from api.deps import (
    CurrentCaller,
    EngineDep,
    IdentityDep,
    PublisherDep,
    ReaderDep,
    SecurityDep,
    StreamServicesDep,
    require,
)
from api.problems import Problem, caller_problems, problem_response, upgrade_required
from api.publisher import PublishUnavailable
from api.security import access, gate
from api.stream_session import CLOSE_ENQUIRY_ENDED, CLOSE_UNKNOWN_ENQUIRY, ResumeVersion
from models.enquiries import EnquiryComplete, EnquiryCreate, EnquiryList, EnquiryPublic
from models.tables import AuditAction, EnquiryStatus

router = APIRouter(prefix="/v1/enquiries", tags=["enquiries"])

EnquiryIdPath = Path(
    pattern=enquiries.ENQUIRY_ID_PATTERN,
    description="The enquiry's id (a UUID).",
    examples=["0b7e4a52-2f1c-4d39-9a57-63c1f0f5b8d2"],
)
PROBLEMS: dict[int | str, dict[str, object]] = {
    **caller_problems("Not an agent, or the enquiry is another agent's."),
    404: {"model": Problem, "description": "No such enquiry, or no citizen known for the identifier."},
    409: {"model": Problem, "description": "Already completed, or being completed, with another outcome."},
    422: {"model": Problem, "description": "The request is not valid."},
    503: {"model": Problem, "description": "A store (Redis, Kafka) is unavailable; retry."},
}


def _problem(request: Request, error: enquiries.EnquiryProblem) -> JSONResponse:
    return problem_response(request, error.status, error.detail)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EnquiryPublic,
    summary="Start an enquiry",
    responses=PROBLEMS,
)
async def start_enquiry(
    request: Request,
    body: EnquiryCreate,
    response: Response,
    caller: CurrentCaller,
    security: SecurityDep,
    engine: EngineDep,
    reader: ReaderDep,
    identity: IdentityDep,
) -> EnquiryPublic | JSONResponse:
    """Start an enquiry for a citizen named by id, phone number, email or case reference.

    Finding the citizen by phone, email or case reference is a lookup, recorded in the audit trail as one.
    """
    require(access.handle_enquiries(caller))
    address = request.client.host if request.client else None
    try:
        enquiry = await enquiries.start_enquiry(
            body,
            agent_id=caller.id,
            engine=engine,
            reader=reader,
            default_region=identity.default_region,
        )
    except enquiries.EnquiryProblem as error:
        if body.citizen_id is None and error.status == 404:  # looked up, and nobody found
            await security.auditor.record(
                caller, AuditAction.lookup, access.ALLOW, citizen_id=None, client_address=address
            )
        return _problem(request, error)
    if body.citizen_id is None:
        found = access.Decision(allowed=True, enquiry_id=enquiry.id)
        await security.auditor.record(
            caller, AuditAction.lookup, found, citizen_id=enquiry.citizen_id, client_address=address
        )
    response.headers["Location"] = f"/v1/enquiries/{enquiry.id}"
    return EnquiryPublic.model_validate(enquiry, from_attributes=True)


@router.get("", response_model=EnquiryList, summary="My active enquiries", responses=PROBLEMS)
async def my_enquiries(caller: CurrentCaller, engine: EngineDep) -> EnquiryList:
    """The calling agent's active enquiries, newest first."""
    require(access.handle_enquiries(caller))
    found = await enquiries.active_enquiries(agent_id=caller.id, engine=engine)
    return EnquiryList(enquiries=[EnquiryPublic.model_validate(e, from_attributes=True) for e in found])


@router.get("/{enquiry_id}", response_model=EnquiryPublic, summary="One enquiry", responses=PROBLEMS)
async def get_enquiry(
    request: Request, caller: CurrentCaller, engine: EngineDep, enquiry_id: str = EnquiryIdPath
) -> EnquiryPublic | JSONResponse:
    """One enquiry: for its own agent only (a supervisor too reads only their own)."""
    require(access.handle_enquiries(caller))
    try:
        enquiry = await enquiries.find_enquiry(enquiry_id, engine=engine)
    except enquiries.EnquiryProblem as error:
        return _problem(request, error)
    require(access.view_enquiry(caller, owns=enquiry.agent_id == caller.id))
    return EnquiryPublic.model_validate(enquiry, from_attributes=True)


@router.post(
    "/{enquiry_id}/complete", response_model=EnquiryPublic, summary="Complete an enquiry", responses=PROBLEMS
)
async def complete_enquiry(
    request: Request,
    body: EnquiryComplete,
    caller: CurrentCaller,
    engine: EngineDep,
    publisher: PublisherDep,
    enquiry_id: str = EnquiryIdPath,
) -> EnquiryPublic | JSONResponse:
    """Complete the enquiry with an outcome and notes; an `enquiry.completed` event joins the timeline."""
    require(access.handle_enquiries(caller))
    if body.notes is not None and enquiries.NOTES_CONTROL_CHARACTER.search(body.notes):
        errors = [
            {
                "location": "body.notes",
                "message": "Notes may hold tabs and line breaks, no other control characters.",
            }
        ]
        return problem_response(request, 422, "The request is not valid.", errors=errors)
    try:
        enquiry = await enquiries.complete_enquiry(
            enquiry_id, body, agent_id=caller.id, engine=engine, publisher=publisher
        )
    except enquiries.EnquiryProblem as error:
        return _problem(request, error)
    except PublishUnavailable:
        # The enquiry stays active, its outcome and notes claimed: a retry with them completes it.
        unavailable = problem_response(
            request, 503, "Kafka did not acknowledge the completion; the enquiry is not completed yet. Retry."
        )
        unavailable.headers["Retry-After"] = "2"
        return unavailable
    return EnquiryPublic.model_validate(enquiry, from_attributes=True)


# The same address over plain HTTP: 426 with how to open it.
router.add_api_route("/{enquiry_id}/stream", upgrade_required, methods=["GET"], include_in_schema=False)


@router.websocket("/{enquiry_id}/stream")
async def stream_enquiry(
    websocket: WebSocket,
    enquiry_id: str,
    services: StreamServicesDep,
    security: SecurityDep,
    engine: EngineDep,
    epoch: str | None = None,
    version: ResumeVersion = None,
) -> None:
    """The stream of the enquiry's citizen; it closes (4410) once the enquiry is completed.

    Authenticate with `?ticket=` (from `POST /v1/stream-tickets`) or the `bearer.<credential>` subprotocol.
    """
    # Past the accept, an error left to the server would drop the connection: the stream closes with
    # its documented code instead (1013 while Redis or the database is unavailable).
    async with gate.closing_on_error(websocket):
        accepted = await gate.accept_stream(websocket, security)
        if accepted is None:
            return
        caller, reason = accepted
        try:
            enquiry = await enquiries.find_enquiry(enquiry_id, engine=engine)
        except enquiries.EnquiryProblem:
            await websocket.close(code=CLOSE_UNKNOWN_ENQUIRY, reason="no such enquiry")
            return
        decision = await gate.authorise_enquiry_stream(
            security,
            caller,
            enquiry=enquiry,
            reason=reason,
            client_address=websocket.client.host if websocket.client else None,
        )
        if await gate.refuse_stream(websocket, decision):
            return
        if enquiry.status is EnquiryStatus.completed:
            await websocket.close(code=CLOSE_ENQUIRY_ENDED, reason="enquiry completed")
            return
        await gate.serve_stream(
            websocket,
            services=services,
            security=security,
            caller=caller,
            decision=decision,
            citizen_id=enquiry.citizen_id,
            enquiry_id=enquiry.id,
            epoch=epoch,
            version=version,
        )
