"""Errors as RFC 9457 problem details (`application/problem+json`), never a bare 500."""

from http import HTTPStatus
from typing import Any

import redis.exceptions
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.head import allowed_with_head
from api.security import gate
from context.store import ErasureOutpaced
from events.codec import is_json, media_type_of, unreadable_json
from models.database import driver_code_log_fields

log = structlog.get_logger("api")

PROBLEM_CONTENT_TYPE = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


def caller_problems(forbidden: str | None = None) -> dict[int | str, dict[str, Any]]:
    """The answers every authenticated route documents: 401, 429, and 403 with why, when it can refuse."""
    problems: dict[int | str, dict[str, Any]] = {
        401: {"model": Problem, "description": "Not signed in, or the credential is invalid or expired."},
        429: {"model": Problem, "description": "Too many requests; see Retry-After."},
    }
    if forbidden is not None:
        problems[403] = {"model": Problem, "description": forbidden}
    return problems


def problem_response(
    request: Request, status: int, detail: str | None = None, *, errors: list[dict[str, Any]] | None = None
) -> JSONResponse:
    """A problem-details response for `status`, its title taken from the HTTP reason phrase."""
    problem = Problem(
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return JSONResponse(
        problem.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_CONTENT_TYPE
    )


async def upgrade_required(request: Request) -> JSONResponse:
    """A plain HTTP request to a stream's address: 426, saying how to open it (rather than a 404, as if
    the address did not exist)."""
    response = problem_response(
        request,
        426,
        "This is a WebSocket endpoint: open it with a WebSocket upgrade (README, The live stream).",
    )
    response.headers["Upgrade"] = "websocket"
    return response


def install_problem_handlers(app: FastAPI) -> None:
    """Turn every error the app can raise into problem details."""
    # Starlette hands a stream's errors to these handlers too. An HTTP answer on a socket already accepted
    # is no answer: the server drops the connection (the client sees 1006) and logs a traceback. A stream
    # is closed with its documented code instead (1013 when Redis is unavailable, 1011 otherwise).

    @app.exception_handler(HTTPException)
    async def http_problem(request: Request | WebSocket, error: HTTPException) -> JSONResponse | None:
        if isinstance(request, WebSocket):
            await gate.close_failed_stream(request, error)
            return None
        response = problem_response(request, error.status_code, _unreadable_body(error) or str(error.detail))
        for name, value in (error.headers or {}).items():
            response.headers[name] = value
        if error.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
            allowed = (error.headers or {}).get("Allow", "").split(",")
            response.headers["Allow"] = allowed_with_head({*allowed, *_methods_routed(request)})
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_problem(
        request: Request | WebSocket, error: RequestValidationError
    ) -> JSONResponse | None:
        if isinstance(request, WebSocket):
            await gate.close_failed_stream(request, error)
            return None
        body_refused = any(item["loc"][:1] == ("body",) for item in error.errors())
        # No Content-Type at all is read as JSON (`media_type_of` of nothing).
        if body_refused and not is_json(media_type_of(request.headers.get("content-type") or None)):
            # A JSON body sent as another type is read as no object at all: say what is really wrong.
            return problem_response(request, 415, "Send the body as JSON (Content-Type: application/json).")
        errors = [_validation_error(item) for item in error.errors()]
        return problem_response(request, 422, "The request is not valid.", errors=errors)

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    @app.exception_handler(redis.exceptions.ReadOnlyError)
    @app.exception_handler(redis.exceptions.OutOfMemoryError)
    # An erasure that new identifiers kept outpacing (context/store.py): its next attempt completes it.
    @app.exception_handler(ErasureOutpaced)
    async def redis_unavailable(request: Request | WebSocket, error: Exception) -> JSONResponse | None:
        return await _store_unavailable(
            request, error, store="redis", detail="The context store is unavailable", retry_after_s=1
        )

    # The database gone (a PostgreSQL failover, a connection refused), SQLite still locked after its busy
    # timeout, or every pooled connection busy past the pool's wait: the request can be tried again.
    @app.exception_handler(sqlalchemy.exc.OperationalError)
    @app.exception_handler(sqlalchemy.exc.TimeoutError)
    async def database_unavailable(request: Request | WebSocket, error: Exception) -> JSONResponse | None:
        return await _store_unavailable(
            request, error, store="database", detail="The database is unavailable", retry_after_s=2
        )

    app.add_middleware(UnexpectedErrorMiddleware)


def _unreadable_body(error: HTTPException) -> str | None:
    """What is wrong with a body the framework could not read as JSON at all, said for the case it is (its
    own words, "There was an error parsing the body", say neither); None for any other error."""
    if error.status_code != HTTPStatus.BAD_REQUEST or error.__cause__ is None:
        return None
    reason = unreadable_json(error.__cause__, what="The body")
    return None if reason is None else f"{reason}."


def _validation_error(item: Any) -> dict[str, str]:
    """One of a request's validation errors as the problem lists it: where, and what is wrong (never the
    input, which may be personal data), in words a caller can act on."""
    location = ".".join(str(part) for part in item["loc"])
    message = item["msg"]
    context = item.get("ctx") or {}
    if item["type"] == "json_invalid":
        # pydantic puts the character's position where a field's name would be: "body.42" names nothing.
        location, position = "body", item["loc"][-1]
        message = f"The body is not JSON: {context.get('error', 'decode error')} at character {position}"
    elif item["type"] == "extra_forbidden":
        # A misspelt member, most likely: ignored, the field meant would have taken its default unseen.
        message = "No such field in this request (misspelt?)"
    elif item["type"] in {"too_long", "too_short"} and isinstance(item.get("input"), str):
        # A text whose type runs a validator of its own is measured as "items": it is characters.
        if item["type"] == "too_long":
            bound = f"at most {context.get('max_length')}"
        else:
            bound = f"at least {context.get('min_length')}"
        message = f"Text should have {bound} characters, not {context.get('actual_length')}"
    return {"location": location, "message": message}


async def _store_unavailable(
    request: Request | WebSocket, error: Exception, *, store: str, detail: str, retry_after_s: int
) -> JSONResponse | None:
    """A store the request needs cannot serve it now: a 503 saying when to try again, or, for a stream, its
    close (1013)."""
    if isinstance(request, WebSocket):
        await gate.close_failed_stream(request, error)
        return None
    log.warning(
        f"{store} unavailable",
        route=_route(request),
        error=type(error).__name__,
        **driver_code_log_fields(error),
    )
    response = problem_response(request, 503, f"{detail}; try again shortly.")
    response.headers["Retry-After"] = str(retry_after_s)
    return response


class BodyTooLarge(Exception):
    """A request body grew past its limit while the app read it: the body limit answers it (413), so it is
    no error of the app's (api/security/hygiene.py)."""


class UnexpectedErrorMiddleware:
    """Answers any unexpected error with a 500 problem and logs only its type and the route template.

    Starlette's own error middleware would log the whole traceback, and tracebacks quote data: a
    validation error its input, a database error its parameters (citizen ids, enquiry notes).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except BodyTooLarge:
            raise
        except Exception as error:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            log.error("unhandled error", route=route, error=type(error).__name__)
            if started:
                return  # the response is under way; nothing more can be said to the client
            response = problem_response(
                Request(scope), 500, "An unexpected error occurred; it has been logged."
            )
            await response(scope, receive, send)


# The methods a route of this API can serve (HEAD is GET's: api/head.py).
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _methods_routed(request: Request) -> set[str]:
    """The methods the routes of the request's path serve. Starlette's `Allow` names only those of the
    first route matching the path (`/v1/enquiries`: POST, though GET lists them), where RFC 9110 asks for
    all of the resource's; each method is matched as the router would match it, from the app's root. A
    mount (the desk's files) matches whatever the method: what it serves is in its own `Allow`."""
    scope = {**request.scope, "root_path": request.scope.get("app_root_path", "")}
    return {
        method
        for method in _METHODS
        if any(
            not isinstance(route, Mount) and route.matches({**scope, "method": method})[0] == Match.FULL
            for route in request.app.routes
        )
    }


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Describe every error response of an OpenAPI document as what it is: `application/problem+json`."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    problem = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for address, path in schema.get("paths", {}).items():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            # What any route of the API, or any that reads a body, may answer besides its own answers:
            # listed once here rather than on each route, so that no route leaves one out.
            common = {**(STORE_PROBLEMS if address.startswith("/v1/") else {})}
            if "requestBody" in operation and "415" not in responses:
                # (A route that documents 415 itself reads its body itself, and answers 422 for one that
                # is not JSON: POST /v1/events.)
                common.update(BODY_PROBLEMS)
            for status, description in common.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                # (A response with a model of its own, /readyz's 503 saying which dependency, keeps it.)
                declared = response.get("content", {}).get("application/json", {}).get("schema", {})
                if status.isdigit() and int(status) >= 400 and not _own_model(declared):
                    response["content"] = problem
    return schema


def _own_model(schema: dict[str, Any]) -> bool:
    """Whether an error response's declared schema is a model of the route's own (not a problem's, nor
    FastAPI's validation error, which the problem handlers answer in place of it)."""
    reference = str(schema.get("$ref", ""))
    return bool(reference) and not reference.endswith(("/Problem", "/HTTPValidationError"))


# The answers `document_problems` adds to every route of the API (STORE_PROBLEMS), and to every route that
# reads a body.
STORE_PROBLEMS = {"503": "Redis, the database or Kafka is unavailable; see Retry-After."}
BODY_PROBLEMS = {
    "400": "The body cannot be read as JSON at all: it is not UTF-8, it nests too deeply, or it holds an"
    " integer of more than 4,300 digits.",
    "413": "The body is larger than the route takes (CITIZEN_CONTEXT_SECURITY_MAX_BODY_BYTES).",
    "415": "The body is not sent as JSON (Content-Type: application/json).",
}
