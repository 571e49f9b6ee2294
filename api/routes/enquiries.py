"""Enquiries: start one for a citizen, list mine, complete one."""

from fastapi import APIRouter, Path, Request, Response, WebSocket, status
from fastapi.responses import JSONResponse

from api import enquiries
from api.deps import CurrentViewer, EngineDep, IdentityDep, PublisherDep, ReaderDep, StreamServicesDep
from api.problems import Problem, problem_response
from api.publisher import PublishUnavailable
from api.stream_session import CLOSE_ENQUIRY_ENDED, CLOSE_UNKNOWN_ENQUIRY, Resume, StreamSession
from models.enquiries import EnquiryComplete, EnquiryCreate, EnquiryList, EnquiryPublic
from models.tables import EnquiryStatus

router = APIRouter(prefix="/v1/enquiries", tags=["enquiries"])

EnquiryIdPath = Path(max_length=36, description="The enquiry's id.")
PROBLEMS: dict[int | str, dict[str, object]] = {
    403: {"model": Problem, "description": "The enquiry is another agent's."},
    404: {"model": Problem, "description": "No such enquiry, or no citizen known for the identifier."},
    409: {"model": Problem, "description": "The enquiry is already completed."},
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
    viewer: CurrentViewer,
    engine: EngineDep,
    reader: ReaderDep,
    identity: IdentityDep,
) -> EnquiryPublic | JSONResponse:
    """Start an enquiry for a citizen named by id, phone number, email or case reference."""
    try:
        enquiry = await enquiries.start_enquiry(
            body,
            agent_id=viewer.id,
            engine=engine,
            reader=reader,
            default_region=identity.default_region,
        )
    except enquiries.EnquiryProblem as error:
        return _problem(request, error)
    response.headers["Location"] = f"/v1/enquiries/{enquiry.id}"
    return EnquiryPublic.model_validate(enquiry, from_attributes=True)


@router.get("", response_model=EnquiryList, summary="My active enquiries", responses=PROBLEMS)
async def my_enquiries(viewer: CurrentViewer, engine: EngineDep) -> EnquiryList:
    """The calling agent's active enquiries, newest first."""
    found = await enquiries.active_enquiries(agent_id=viewer.id, engine=engine)
    return EnquiryList(enquiries=[EnquiryPublic.model_validate(e, from_attributes=True) for e in found])


@router.get("/{enquiry_id}", response_model=EnquiryPublic, summary="One enquiry", responses=PROBLEMS)
async def get_enquiry(
    request: Request, viewer: CurrentViewer, engine: EngineDep, enquiry_id: str = EnquiryIdPath
) -> EnquiryPublic | JSONResponse:
    """One enquiry."""
    try:
        enquiry = await enquiries.find_enquiry(enquiry_id, engine=engine)
    except enquiries.EnquiryProblem as error:
        return _problem(request, error)
    return EnquiryPublic.model_validate(enquiry, from_attributes=True)


@router.post(
    "/{enquiry_id}/complete", response_model=EnquiryPublic, summary="Complete an enquiry", responses=PROBLEMS
)
async def complete_enquiry(
    request: Request,
    body: EnquiryComplete,
    viewer: CurrentViewer,
    engine: EngineDep,
    publisher: PublisherDep,
    enquiry_id: str = EnquiryIdPath,
) -> EnquiryPublic | JSONResponse:
    """Complete the enquiry with an outcome and notes; an `enquiry.completed` event joins the timeline."""
    try:
        enquiry = await enquiries.complete_enquiry(
            enquiry_id, body, agent_id=viewer.id, engine=engine, publisher=publisher
        )
    except enquiries.EnquiryProblem as error:
        return _problem(request, error)
    except PublishUnavailable:
        unavailable = problem_response(request, 503, "Kafka did not acknowledge the completion; retry.")
        unavailable.headers["Retry-After"] = "2"
        return unavailable
    return EnquiryPublic.model_validate(enquiry, from_attributes=True)


@router.websocket("/{enquiry_id}/stream")
async def stream_enquiry(
    websocket: WebSocket,
    enquiry_id: str,
    services: StreamServicesDep,
    viewer: CurrentViewer,
    engine: EngineDep,
    epoch: str | None = None,
    version: int | None = None,
) -> None:
    """The stream of the enquiry's citizen; it closes (4410) once the enquiry is completed."""
    # Accept first: a close before accepting reaches real clients as an HTTP 403, not as the close code.
    await websocket.accept()
    try:
        enquiry = await enquiries.find_enquiry(enquiry_id[:36], engine=engine)
    except enquiries.EnquiryProblem:
        await websocket.close(code=CLOSE_UNKNOWN_ENQUIRY, reason="no such enquiry")
        return
    if enquiry.status is EnquiryStatus.completed:
        await websocket.close(code=CLOSE_ENQUIRY_ENDED, reason="enquiry completed")
        return
    resume = Resume(epoch, version) if epoch is not None and version is not None and version >= 0 else None
    session = StreamSession(
        websocket,
        citizen_id=enquiry.citizen_id,
        viewer_id=viewer.id,
        services=services,
        enquiry_id=enquiry.id,
    )
    await session.run(resume)
