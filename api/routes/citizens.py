"""A citizen's context: read over REST (whole, or paged back through the timeline), streamed live."""

import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, Field
from pydantic_core import PydanticCustomError

from api.deps import (
    CurrentCaller,
    IdentityDep,
    ReaderDep,
    SecurityDep,
    StreamServicesDep,
    authenticated_caller,
    require,
)
from api.problems import Problem, caller_problems, problem_response, upgrade_required
from api.query import QueryTime
from api.security import access, gate
from api.security.authentication import SecurityServices
from api.security.principal import Caller
from api.stream_session import CLOSE_INVALID_REQUEST, ResumeVersion
from context.identity import IdentifierKind, InvalidIdentifier, normalise
from context.paging import InvalidCursor, IssuedCursor, TimelineFilter, decode_cursor, encode_cursor
from context.settings import IdentitySettings
from context.store import ContextJson, ContextReader, TimelinePosition
from context.timeline import time_score
from models.bodies import RequestBody
from models.context import CitizenContext
from models.events import CITIZEN_ID_PATTERN, CloudEvent
from models.security import HeaderText, header_text
from models.tables import AuditAction

router = APIRouter(prefix="/v1/citizens", tags=["citizens"])

CitizenIdPath = Annotated[
    str, Path(pattern=CITIZEN_ID_PATTERN, description="The citizen's id.", examples=["C-100234"])
]
# Recorded in the audit trail: a control character is refused (422) before it reaches SQL.
AccessReason = Annotated[
    HeaderText | None,
    Header(
        alias="X-Access-Reason",
        max_length=access.MAX_REASON,
        description="Why a supervisor views a citizen without an enquiry; recorded in the audit trail.",
    ),
]
# Every route reading a citizen answers these, besides its own.
ACCESS_PROBLEMS = caller_problems("No active enquiry for the citizen, no reason, or no scope.")
MAX_PAGE = 200
# How many events one round trip reads while filling a filtered page.
SCAN_STEP = 100


class TimelinePage(BaseModel):
    """A page of the timeline, newest first."""

    citizen_id: str
    epoch: str
    events: list[CloudEvent]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null at the end."
    )


class LookupResult(BaseModel):
    """The citizen an identifier belongs to."""

    citizen_id: str
    kind: IdentifierKind
    value: str = Field(
        description="The identifier, normalised (E.164 phone, lower-case email, upper-case case)."
    )


def _etag(context: ContextJson) -> str:
    # The version changes with every event; the summary also moves with time (its 7- and 30-day windows),
    # so its digest is part of the tag too: a 304 is only ever answered for what is really unchanged.
    return f'"{context.head.epoch}.{context.head.version}.{context.summary_digest}"'


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110's weak comparison for If-None-Match: `W/` is ignored, and `*` matches any tag."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


class LookupRequest(RequestBody):
    """One identifier to find the citizen by."""

    phone: str | None = Field(default=None, max_length=40, examples=["07700 900123"])
    email: str | None = Field(default=None, max_length=254)
    case: str | None = Field(default=None, max_length=64)


LOOKUP_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ACCESS_PROBLEMS,
    404: {"model": Problem, "description": "No citizen is known for the identifier."},
    422: {"model": Problem, "description": "Not exactly one identifier, or a malformed one."},
}


@router.post(
    "/lookup",
    response_model=LookupResult,
    summary="Find a citizen by phone number, email or case reference",
    responses=LOOKUP_RESPONSES,
)
async def lookup_by_body(
    request: Request,
    reader: ReaderDep,
    caller: CurrentCaller,
    security: SecurityDep,
    identity: IdentityDep,
    body: LookupRequest,
) -> LookupResult | JSONResponse:
    """Resolve one identifier to a citizen id, for a desktop that only knows the caller's number. The
    identifier travels in the body, where no proxy or browser history keeps it (a URL's query is logged
    by whatever forwards it)."""
    return await _lookup(
        request, reader, caller, security, identity, phone=body.phone, email=body.email, case=body.case
    )


@router.get(
    "/lookup",
    response_model=LookupResult,
    summary="Find a citizen by phone number, email or case reference (in the URL: prefer POST)",
    responses=LOOKUP_RESPONSES,
    deprecated=True,
)
async def lookup(
    request: Request,
    reader: ReaderDep,
    caller: CurrentCaller,
    security: SecurityDep,
    identity: IdentityDep,
    phone: Annotated[str | None, Query(max_length=40, examples=["07700 900123"])] = None,
    email: Annotated[str | None, Query(max_length=254)] = None,
    case: Annotated[str | None, Query(max_length=64)] = None,
) -> LookupResult | JSONResponse:
    """As `POST /v1/citizens/lookup`, with the identifier in the query: proxies, load balancers and
    browser histories keep URLs, so a phone number or email address there is personal data in their logs.

    Every answer says so (api/deprecation.py)."""
    return await _lookup(request, reader, caller, security, identity, phone=phone, email=email, case=case)


async def _lookup(
    request: Request,
    reader: ContextReader,
    caller: Caller,
    security: SecurityServices,
    identity: IdentitySettings,
    *,
    phone: str | None,
    email: str | None,
    case: str | None,
) -> LookupResult | JSONResponse:
    decision = access.lookup_identifier(caller)
    if not decision.allowed:
        await security.auditor.record(
            caller, AuditAction.lookup, decision, citizen_id=None, client_address=_address(request)
        )
        require(decision)
    given = [
        (IdentifierKind(name), value)
        for name, value in (("phone", phone), ("email", email), ("case", case))
        if value
    ]
    if len(given) != 1:
        return problem_response(request, 422, "Give exactly one of phone, email or case.")
    kind, raw = given[0]
    try:
        value = normalise(kind, raw, default_region=identity.default_region)
    except InvalidIdentifier as error:
        return problem_response(request, 422, f"The {kind.value} is not valid: {error}.")
    citizen = await reader.lookup(kind, value)
    await security.auditor.record(
        caller, AuditAction.lookup, decision, citizen_id=citizen, client_address=_address(request)
    )
    if citizen is None:
        return problem_response(request, 404, f"No citizen is known for this {kind.value}.")
    return LookupResult(citizen_id=citizen, kind=kind, value=value)


class _ContextReadRoute(APIRoute):
    """The context read's route: served without FastAPI's dependency solving when its request is well-formed.

    Every desktop reads this route, and solving its dependencies and parameters cost FastAPI about 150 us
    of the API's CPU per read (825 to 833 us before this route, 663 to 686 after; see README, Benchmarks).
    A request whose citizen id and headers are well-formed is served directly: the same authentication and
    rate limit (`authenticated_caller`), then the same `_serve_context` as the declared endpoint. Any other
    request goes through FastAPI's own handler, so its 422 (and every other answer) is exactly what the
    declared signature gives.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        solved = super().get_route_handler()

        async def handler(request: Request) -> Response:
            citizen_id = request.path_params.get("citizen_id", "")
            sent = request.headers.get("x-access-reason")
            reason = None if sent is None else header_text(sent)
            if not well_formed_read(citizen_id, reason):
                return await solved(request)
            caller = await authenticated_caller(request)
            return await _serve_context(
                request,
                citizen_id=citizen_id,
                reader=request.state.reader,
                caller=caller,
                security=request.state.security,
                reason=reason,
                if_none_match=request.headers.get("if-none-match"),
            )

        return handler


def well_formed_read(citizen_id: str, reason: str | None) -> bool:
    """Whether the context read's parameters pass the route's declared checks (the direct path's guard)."""
    return _CITIZEN_ID.fullmatch(citizen_id) is not None and (
        reason is None or len(reason) <= access.MAX_REASON
    )


_CITIZEN_ID = re.compile(CITIZEN_ID_PATTERN)


async def get_context(
    request: Request,
    citizen_id: CitizenIdPath,
    reader: ReaderDep,
    caller: CurrentCaller,
    security: SecurityDep,
    reason: AccessReason = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Profile, summary, the newest page of the timeline, version and epoch. Unknown citizens are empty."""
    return await _serve_context(
        request,
        citizen_id=citizen_id,
        reader=reader,
        caller=caller,
        security=security,
        reason=reason,
        if_none_match=if_none_match,
    )


# Declared as usual (its OpenAPI operation and its fallback), served by the route class above.
router.add_api_route(
    "/{citizen_id}/context",
    get_context,
    methods=["GET"],
    response_model=CitizenContext,
    summary="A citizen's context",
    responses={
        **ACCESS_PROBLEMS,
        304: {"description": "Unchanged since the `ETag` given in `If-None-Match`."},
        422: {"model": Problem, "description": "The citizen id is not valid."},
        503: {"model": Problem, "description": "The context store is unavailable."},
    },
    route_class_override=_ContextReadRoute,
)


async def _serve_context(
    request: Request,
    *,
    citizen_id: str,
    reader: ContextReader,
    caller: Caller,
    security: SecurityServices,
    reason: str | None,
    if_none_match: str | None,
) -> Response:
    await _authorise(request, security, caller, citizen_id, AuditAction.context_read, reason)
    # Served as encoded by the reader (the stored events spliced in): the hot path of every desktop.
    context = await reader.context_json(citizen_id)
    etag = _etag(context)
    if if_none_match and _matches(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(context.body, media_type="application/json", headers={"ETag": etag})


def _issued_cursor(cursor: str | None) -> str | None:
    """A timeline cursor in the form this API issues (an IssuedCursor, parsed), checked with the request's
    other parameters (so that a 422 names every invalid one); its generation is checked once the read
    begins."""
    if not cursor:
        return cursor
    try:
        return IssuedCursor(cursor)
    except InvalidCursor as error:
        raise PydanticCustomError("invalid_cursor", str(error).capitalize()) from None


@router.get(
    "/{citizen_id}/timeline",
    response_model=TimelinePage,
    summary="Page back through a citizen's timeline",
    responses={
        **ACCESS_PROBLEMS,
        410: {"model": Problem, "description": "The cursor is from before a rebuild; start again."},
        422: {"model": Problem, "description": "A parameter or the cursor is not valid."},
    },
)
async def get_timeline(
    request: Request,
    citizen_id: CitizenIdPath,
    reader: ReaderDep,
    caller: CurrentCaller,
    security: SecurityDep,
    reason: AccessReason = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000), AfterValidator(_issued_cursor)] = None,
    type: Annotated[list[str] | None, Query(max_length=20)] = None,
    channel: Annotated[list[str] | None, Query(max_length=20)] = None,
    since: QueryTime | None = None,
    until: QueryTime | None = None,
) -> TimelinePage | JSONResponse:
    """Newest first; `next_cursor` walks back through the whole timeline with no gap and no repeat."""
    await _authorise(request, security, caller, citizen_id, AuditAction.timeline_read, reason)
    # Read afresh, not kept for a second as for context reads: a cursor must never outlive its generation.
    epoch = await reader.current_epoch(fresh=True)
    below = None
    if cursor:
        try:
            below = decode_cursor(cursor, epoch=epoch)
        except InvalidCursor as error:
            # In a cursor's form (the parameter's validation checked it), but of a generation not served.
            return problem_response(request, 410, f"{str(error).capitalize()}.")
    wanted = TimelineFilter(frozenset(type or ()), frozenset(channel or ()), since, until)
    # Collect one match more than the page holds: it tells whether a next page exists.
    found: list[tuple[TimelinePosition, CloudEvent]] = []
    position = below
    while len(found) <= limit:
        slice_ = await reader.timeline_slice(
            citizen_id,
            epoch=epoch,
            below=position,
            highest_score=time_score(until) if until is not None and position is None else None,
            lowest_score=time_score(since) if since is not None else None,
            count=SCAN_STEP,
        )
        for spot, event in slice_:
            position = spot
            if wanted.matches(event):
                found.append((spot, event))
                if len(found) > limit:
                    break
        if len(slice_) < SCAN_STEP:
            break
    page = found[:limit]
    next_cursor = encode_cursor(epoch, page[-1][0]) if len(found) > limit else None
    events = [event for _spot, event in page]
    return TimelinePage(citizen_id=citizen_id, epoch=epoch, events=events, next_cursor=next_cursor)


# The same address over plain HTTP: 426 with how to open it.
router.add_api_route("/{citizen_id}/stream", upgrade_required, methods=["GET"], include_in_schema=False)


@router.websocket("/{citizen_id}/stream")
async def stream_context(
    websocket: WebSocket,
    citizen_id: str,
    services: StreamServicesDep,
    security: SecurityDep,
    epoch: str | None = None,
    version: ResumeVersion = None,
) -> None:
    """A snapshot (or, given the `epoch` and `version` last seen, just what was missed), then every change.

    Authenticate with `?ticket=` (from `POST /v1/stream-tickets`) or the `bearer.<credential>` subprotocol.
    """
    # Past the accept, an error left to the server would drop the connection: the stream closes with
    # its documented code instead (1013 while Redis or the database is unavailable).
    async with gate.closing_on_error(websocket):
        accepted = await gate.accept_stream(websocket, security)
        if accepted is None:
            return
        caller, reason = accepted
        if not re.fullmatch(CITIZEN_ID_PATTERN, citizen_id):
            await websocket.close(code=CLOSE_INVALID_REQUEST, reason="invalid citizen id")
            return
        decision = await gate.authorise_citizen_read(
            security,
            caller,
            citizen_id=citizen_id,
            action=AuditAction.stream_opened,
            reason=reason,
            client_address=_address(websocket),
        )
        if await gate.refuse_stream(websocket, decision):
            return
        await gate.serve_stream(
            websocket,
            services=services,
            security=security,
            caller=caller,
            decision=decision,
            citizen_id=citizen_id,
            enquiry_id=decision.enquiry_id,
            epoch=epoch,
            version=version,
            any_held_enquiry=True,
        )


def _address(connection: Request | WebSocket) -> str | None:
    return connection.client.host if connection.client else None


async def _authorise(
    request: Request,
    security: SecurityDep,
    caller: CurrentCaller,
    citizen_id: str,
    action: AuditAction,
    reason: str | None,
) -> None:
    require(
        await gate.authorise_citizen_read(
            security,
            caller,
            citizen_id=citizen_id,
            action=action,
            reason=reason,
            client_address=_address(request),
        )
    )
