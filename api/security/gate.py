"""The checks in front of a citizen's data: decide, record the decision, and keep checking open streams."""

import contextlib
from collections.abc import AsyncIterator

import structlog
from fastapi import WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketState

from api.security import access
from api.security.access import Decision
from api.security.authentication import SUBPROTOCOL, RateLimited, SecurityServices, Unauthenticated
from api.security.principal import Caller
from api.security.stream_access import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from api.stream_session import (
    CLOSE_INVALID_REQUEST,
    CLOSE_TRY_AGAIN,
    CLOSE_UNKNOWN_STREAM,
    Resume,
    StreamServices,
    StreamSession,
    failure_close,
)
from models import enquiry_repository
from models.database import driver_code_log_fields
from models.security import NO_CONTROL_CHARACTERS, has_control_characters
from models.tables import AuditAction, Enquiry

log = structlog.get_logger("streaming")


async def authorise_citizen_read(
    security: SecurityServices,
    caller: Caller,
    *,
    citizen_id: str,
    action: AuditAction,
    reason: str | None,
    client_address: str | None,
) -> Decision:
    """May `caller` read this citizen now? The answer, allowed or not, is recorded in the audit trail.

    A reason (the X-Access-Reason header, over REST) with a control character in it is refused as invalid
    (422) before anything is decided or recorded; a stream's reason was checked as it opened.
    """
    if reason is not None and has_control_characters(reason):
        raise RequestValidationError(
            [
                {
                    "type": "control_characters",
                    "loc": ("header", "X-Access-Reason"),
                    "msg": NO_CONTROL_CHARACTERS,
                }
            ]
        )
    # One batch of the audit's writer thread, shared with the other reads waiting at the same time, both
    # looks up the agent's enquiry and writes the record (see api/security/audit.py).
    return await security.auditor.decide_and_record(
        caller,
        action,
        lambda held: access.read_citizen(caller, held_enquiry=held, reason=reason),
        citizen_id=citizen_id,
        client_address=client_address,
    )


CLOSE_RATE_LIMITED = 4429


async def serve_stream(
    websocket: WebSocket,
    *,
    services: StreamServices,
    security: SecurityServices,
    caller: Caller,
    decision: Decision,
    citizen_id: str,
    enquiry_id: str | None,
    epoch: str | None,
    version: int | None,
    any_held_enquiry: bool = False,
) -> None:
    """Run an authorised stream (from where the client left off, if it says), re-checking its access.

    The stream ends when `enquiry_id` ends; with `any_held_enquiry` (a citizen's stream, opened under the
    agent's enquiry for them), only once the agent holds no other active enquiry for the citizen, whose
    stream it then goes on being.
    """
    resume = Resume(epoch, version) if epoch is not None and version is not None else None
    held_for = citizen_id if any_held_enquiry and enquiry_id is not None else None

    async def other_held_enquiry(completed: frozenset[str]) -> str | None:
        def query() -> list[str]:
            with Session(security.engine) as session:
                # Newest first: one more than the completions seen is enough to pass every one of them.
                return enquiry_repository.held_enquiry_ids(
                    session, agent_id=caller.id, citizen_id=citizen_id, limit=len(completed) + 1
                )

        # Filtered here, not in SQL: the completions a stream has seen are not bounded by much.
        held = next((id_ for id_ in await run_in_threadpool(query) if id_ not in completed), None)
        if held is not None:
            # The view goes on under another enquiry: the audit trail names the one that now justifies it.
            await security.auditor.record(
                caller,
                AuditAction.stream_opened,
                Decision(allowed=True, enquiry_id=held),
                citizen_id=citizen_id,
                client_address=websocket.client.host if websocket.client else None,
            )
        return held

    session = StreamSession(
        websocket,
        citizen_id=citizen_id,
        viewer_id=caller.id,
        services=services,
        enquiry_id=enquiry_id,
        next_enquiry=other_held_enquiry if held_for is not None else None,
        # The process re-checks every open stream's access together (api/security/stream_access.py).
        access_watch=lambda subscription: services.access_checks.watching(
            caller, decision, subscription, held_for=held_for
        ),
    )
    await session.run(resume)


@contextlib.asynccontextmanager
async def closing_on_error(websocket: WebSocket) -> AsyncIterator[None]:
    """Run a stream handler's steps; an error none of them handled closes the stream with its documented
    code: 1013 (try again later) when Redis or the database is unavailable, 1011 for anything else.

    Left to the server, an error on an accepted socket drops the connection without a close frame (the
    client sees 1006, and cannot tell "retry" from "broken") and logs a traceback, which can quote data.
    """
    try:
        yield
    except WebSocketDisconnect:
        return  # the client went away: nobody is left to tell
    except Exception as error:
        await close_failed_stream(websocket, error)


async def close_failed_stream(websocket: WebSocket, error: Exception) -> None:
    """Close the stream `error` ended with its documented code, logging only the error's type, the
    database driver's code for it if any, and the route (never its text)."""
    code, reason = failure_close(error)
    route = getattr(websocket.scope.get("route"), "path", None) or "unmatched"
    if code == CLOSE_TRY_AGAIN:
        log.warning(
            "stream store unavailable",
            route=route,
            error=type(error).__name__,
            **driver_code_log_fields(error),
        )
    else:
        log.error("stream failed", route=route, error=type(error).__name__)
    # A client already gone is told nothing.
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        if websocket.application_state is WebSocketState.CONNECTING:
            await _accept(websocket)
        if websocket.application_state is WebSocketState.CONNECTED:
            await websocket.close(code=code, reason=reason)


async def accept_stream(websocket: WebSocket, security: SecurityServices) -> tuple[Caller, str | None] | None:
    """Accept the WebSocket and authenticate it, and take its stated reason (the ticket's, the
    X-Access-Reason header or ?reason=); None (the socket closed with the code) when either fails."""
    offered = await _accept(websocket)
    try:
        caller, reason = await security.authenticate_stream(
            ticket=websocket.query_params.get("ticket"), subprotocols=list(offered), headers=websocket.headers
        )
        await security.limit(caller)
    except Unauthenticated as error:
        await websocket.close(code=CLOSE_UNAUTHENTICATED, reason=_close_reason(str(error)))
        return None
    except RateLimited:
        await websocket.close(code=CLOSE_RATE_LIMITED, reason="too many requests")
        return None
    reason = reason or websocket.query_params.get("reason")
    if reason is not None and has_control_characters(reason):
        # Refused as any invalid parameter is: the reason goes into the audit trail, where a NUL would
        # fail its statement (a ticket's reason was checked when the ticket was issued).
        await websocket.close(
            code=CLOSE_INVALID_REQUEST, reason=f"invalid reason: {NO_CONTROL_CHARACTERS.lower()}"
        )
        return None
    return caller, reason


async def _accept(websocket: WebSocket) -> list[str]:
    """Accept the WebSocket, answering the project's subprotocol if offered; the subprotocols offered.

    Accepted first: a close before accepting reaches real clients as an HTTP 403, not as the close code.
    """
    offered: list[str] = list(websocket.scope.get("subprotocols") or [])
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    return offered


# A close frame's reason holds at most 123 bytes.
MAX_CLOSE_REASON = 123


async def refuse_invalid_request(websocket: WebSocket, error: WebSocketRequestValidationError) -> None:
    """Close a stream whose request does not validate (`?version=abc`) with the documented code, its reason
    naming the parameters at fault (never their values). FastAPI's own handler closes before accepting:
    clients saw an HTTP 403 that did not say what was wrong."""
    await _accept(websocket)
    where = sorted({".".join(str(part) for part in item["loc"]) for item in error.errors()})
    await websocket.close(
        code=CLOSE_INVALID_REQUEST, reason=_close_reason(f"invalid {', '.join(where) or 'request'}")
    )


def _close_reason(text: str) -> str:
    """`text` (safe to show the caller, as a REST refusal's detail) cut to fit a close frame, whole
    characters only."""
    return text.encode()[:MAX_CLOSE_REASON].decode(errors="ignore")


async def refuse_unknown_stream(websocket: WebSocket) -> None:
    """Close a WebSocket opened on a path that is no stream, with the documented code for an unknown one."""
    await _accept(websocket)
    await websocket.close(code=CLOSE_UNKNOWN_STREAM, reason="no such stream")


async def refuse_stream(websocket: WebSocket, decision: Decision) -> bool:
    """Close the stream as forbidden unless the decision allows it; True when it was refused."""
    if decision.allowed:
        return False
    await websocket.close(code=CLOSE_FORBIDDEN, reason=_close_reason(decision.detail or "forbidden"))
    return True


async def authorise_enquiry_stream(
    security: SecurityServices,
    caller: Caller,
    *,
    enquiry: Enquiry,
    reason: str | None,
    client_address: str | None,
) -> Decision:
    """May `caller` follow this enquiry's stream? Recorded like any read of the citizen."""
    owns = caller.is_agent and caller.id == enquiry.agent_id
    decision = access.follow_enquiry(caller, enquiry_id=enquiry.id, owns=owns, reason=reason)
    await security.auditor.record(
        caller,
        AuditAction.stream_opened,
        decision,
        citizen_id=enquiry.citizen_id,
        client_address=client_address,
    )
    return decision
