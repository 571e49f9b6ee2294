"""REST ingestion: integrators publish events over HTTP; they reach Kafka like any other event."""

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import CurrentCaller, IdentityDep, PublisherDep, require
from api.problems import Problem, caller_problems, problem_response
from api.publisher import EventsTooLarge, PublishUnavailable
from api.security import access
from events.codec import InvalidEvent, judge, loads_json, media_type_of
from models.events import STRUCTURED_CONTENT_TYPE, CloudEvent
from models.taxonomy import RESERVED_SOURCE_PREFIX, RESERVED_TYPES

router = APIRouter(prefix="/v1/events", tags=["events"])

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
MAX_BODY_BYTES = 1_048_576
MAX_BATCH = 500

EXAMPLE_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "4b1c0e7e-0d3a-4a57-b6f0-3f7c2f1e9a10",
    "source": "/telephony/contact-centre",
    "type": "call.ended",
    "subject": "C-100234",
    "time": "2026-11-28T09:15:00Z",
    "datacontenttype": "application/json",
    "data": {"channel": "phone", "summary": "Asked about HB-4471", "call_id": "CALL-1", "duration_s": 412},
}


class AcceptedEvent(BaseModel):
    """An event Kafka has acknowledged."""

    id: str
    source: str


class Accepted(BaseModel):
    """Every event of the request is in Kafka; the projection applies them within moments."""

    accepted: list[AcceptedEvent] = Field(description="The events, in the order they were sent.")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    summary="Publish one event or a batch",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                STRUCTURED_CONTENT_TYPE: {"schema": {"type": "object"}, "example": EXAMPLE_EVENT},
                BATCH_CONTENT_TYPE: {"schema": {"type": "array", "items": {"type": "object"}}},
                "application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array"}]}},
            },
        }
    },
    responses={
        **caller_problems("The key lacks the events:write scope."),
        413: {
            "model": Problem,
            "description": "The body is larger than 1 MiB or the batch has over 500 events.",
        },
        415: {"model": Problem, "description": "The body is not sent as JSON (its Content-Type)."},
        422: {
            "model": Problem,
            "description": "The body is not JSON, or an event breaks the contract or is too large; none of"
            " the batch was published (unless Kafka itself refused one as too large, which the detail says).",
        },
        503: {"model": Problem, "description": "Kafka did not acknowledge the events; retry."},
    },
)
async def publish_events(
    request: Request, publisher: PublisherDep, caller: CurrentCaller, identity: IdentityDep
) -> JSONResponse:
    """Validate the events against the contract and publish them to Kafka (all of them, or none).

    A single CloudEvent (`application/cloudevents+json`), a batch (`application/cloudevents-batch+json`), or
    either as `application/json`. Publishing the same event again is harmless: the projection keeps it once.
    Needs a key with the `events:write` scope.
    """
    require(access.publish_events(caller))
    media_type = media_type_of(request.headers.get("content-type", ""))
    if media_type not in {STRUCTURED_CONTENT_TYPE, BATCH_CONTENT_TYPE, "application/json"}:
        return problem_response(
            request, 415, f"Send {STRUCTURED_CONTENT_TYPE}, {BATCH_CONTENT_TYPE} or JSON."
        )
    body = await _read_limited(request)
    if body is None:
        return problem_response(request, 413, f"The body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        document = loads_json(body, what="The body")
    except InvalidEvent as error:
        return problem_response(request, 422, f"{error.detail}.")
    documents = document if isinstance(document, list) else [document]
    if media_type == BATCH_CONTENT_TYPE and not isinstance(document, list):
        return problem_response(request, 422, "A batch must be a JSON array of events.")
    if media_type == STRUCTURED_CONTENT_TYPE and isinstance(document, list):
        message = f"{STRUCTURED_CONTENT_TYPE} carries one event; send a batch as {BATCH_CONTENT_TYPE}."
        return problem_response(request, 422, message)
    if not documents:
        return problem_response(request, 422, "The batch is empty.")
    if len(documents) > MAX_BATCH:
        return problem_response(request, 413, f"A batch holds at most {MAX_BATCH} events.")
    events, errors = _judge_all(documents, region=identity.default_region)
    if errors:
        return problem_response(
            request, 422, "Some events break the contract; none was published.", errors=errors
        )
    try:
        await publisher.publish(events)
    except EventsTooLarge as error:
        # Permanent: sending the same events again would never help, so no 503 and no Retry-After.
        errors = [
            {"location": f"body[{index}]", "reason": "too-large", "message": reason}
            for index, reason in error.reasons.items()
        ]
        detail = (
            "Kafka refused some events as too large; the others may have been published."
            if error.others_sent
            else "Some events are too large for Kafka; none was published."
        )
        return problem_response(request, 422, detail, errors=errors)
    except PublishUnavailable:
        response = problem_response(request, 503, "Kafka did not acknowledge the events; retry them.")
        response.headers["Retry-After"] = "2"
        return response
    accepted = Accepted(accepted=[AcceptedEvent(id=e.id, source=e.source) for e in events])
    return JSONResponse(accepted.model_dump(), status_code=status.HTTP_202_ACCEPTED)


async def _read_limited(request: Request) -> bytes | None:
    """The body, or None once it exceeds the limit (read no further than that)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _judge_all(documents: list[Any], *, region: str) -> tuple[list[CloudEvent], list[dict[str, Any]]]:
    events: list[CloudEvent] = []
    errors: list[dict[str, Any]] = []
    for index, document in enumerate(documents):
        if not isinstance(document, dict):
            errors.append(
                {"location": f"body[{index}]", "reason": "not-an-object", "message": "not a JSON object"}
            )
            continue
        reserved = _reserved(document.get("type"), document.get("source"))
        if reserved is not None:
            # Only the API itself records an erasure (DELETE /v1/citizens/{id}, with its own scope) or
            # an enquiry's completion (by the agent handling it). Said first, whatever else is wrong with
            # the event: no correction would let the caller publish it.
            errors.append({"location": f"body[{index}]", "reason": "reserved", "message": reserved})
            continue
        try:
            events.append(judge(document, default_region=region))
        except InvalidEvent as error:
            errors.append({"location": f"body[{index}]", "reason": error.reason, "message": error.detail})
    return events, errors


def _reserved(type_: Any, source: Any) -> str | None:
    """Why only Citizen Context itself may publish an event of this type or from this source; None when
    anyone may (or when they are no strings at all, which judging the event reports)."""
    if isinstance(type_, str) and type_ in RESERVED_TYPES:
        return f"{type_} events are reserved to Citizen Context"
    if isinstance(source, str) and _first_segment(source) == RESERVED_SOURCE_PREFIX.strip("/"):
        return f"sources under {RESERVED_SOURCE_PREFIX} are reserved to Citizen Context"
    return None


def _first_segment(source: str) -> str:
    """A source's first path segment, compared without case and however many slashes lead to it (so that
    `/Citizen-Context/x`, `//citizen-context/x` and `/citizen-context` fall in the reserved namespace too)."""
    return source.lstrip("/").split("/", 1)[0].lower()
