"""Liveness and readiness probes."""

from typing import Literal

import redis.exceptions
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, HubDep, RedisDep
from models.database import ping

router = APIRouter(tags=["health"])

CheckStatus = Literal["ok", "unavailable"]


class Health(BaseModel):
    """The process is alive."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Whether the process can serve: each dependency's state."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, CheckStatus]


# HEAD too (api/head.py, as every GET route): some load balancers and orchestrators probe with it.
@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    """Liveness: answers as long as the process runs."""
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The process can serve",
    responses={503: {"model": Readiness, "description": "A dependency is unavailable."}},
)
async def readyz(request: Request, redis_client: RedisDep, engine: EngineDep, hub: HubDep) -> JSONResponse:
    """Readiness: Redis and the database answer, live changes flow in, and the process is not draining."""
    checks: dict[str, CheckStatus] = {}
    try:
        await redis_client.ping()
        checks["redis"] = "ok"
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        checks["redis"] = "unavailable"
    try:
        await run_in_threadpool(ping, engine)
        checks["database"] = "ok"
    except SQLAlchemyError:
        checks["database"] = "unavailable"
    checks["changes"] = "ok" if hub.connected.is_set() else "unavailable"
    if request.app.state.lifecycle.draining:
        checks["shutdown"] = "unavailable"
    ready = all(value == "ok" for value in checks.values())
    body = Readiness(status="ready" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
