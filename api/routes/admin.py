"""Administration over REST: integrators' API keys (the CLI does the same from a shell).

Every change of a key is in the audit trail, with its admin (api/security/api_keys.py), and so is every
change refused for want of the admin role.
"""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentCaller, EngineDep, SecurityDep, require
from api.problems import Problem, caller_problems, problem_response
from api.security import access, api_keys
from api.security.api_keys import IssuedKey, KeyProblem
from api.security.audit import Actor
from api.security.principal import Caller
from models.security import ApiKeyCreate, ApiKeyIssued, ApiKeyList, ApiKeyPublic, ApiKeyRotate, PlainText
from models.tables import ApiKey, AuditAction

router = APIRouter(prefix="/v1/admin/api-keys", tags=["admin"])

PROBLEMS: dict[int | str, dict[str, object]] = {
    **caller_problems("Only admins manage API keys."),
    404: {"model": Problem, "description": "No such key (or it is revoked or expired)."},
    409: {"model": Problem, "description": "The client already holds two keys; revoke one first."},
    422: {"model": Problem, "description": "The request is not valid."},
}


def public(record: ApiKey) -> ApiKeyPublic:
    """A key as shown: never its secret (which is not held anyway)."""
    return ApiKeyPublic(
        id=record.id,
        client=record.client,
        scopes=sorted(api_keys.scopes_of(record)),
        created_at=record.created_at,
        expires_at=record.expires_at,
        last_used_at=record.last_used_at,
        revoked_at=record.revoked_at,
    )


def issued(new: IssuedKey) -> ApiKeyIssued:
    """A new key, with its secret, shown this once."""
    return ApiKeyIssued(**public(new.record).model_dump(), key=new.key)


async def key_admin(
    request: Request, caller: Caller, security: SecurityDep, action: AuditAction, key_id: str | None = None
) -> Actor:
    """The admin changing a key, as the audit trail names them; a caller who may not is refused (403),
    and the refusal recorded."""
    decision = access.manage_keys(caller)
    address = request.client.host if request.client else None
    if not decision.allowed:
        await security.auditor.record(
            caller, action, decision, citizen_id=None, client_address=address, api_key_id=key_id
        )
    require(decision)
    return Actor.calling(caller, address)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyIssued, responses=PROBLEMS)
async def create_key(
    request: Request, body: ApiKeyCreate, caller: CurrentCaller, engine: EngineDep, security: SecurityDep
) -> ApiKeyIssued | JSONResponse:
    """Create a key; its secret is in this response only."""
    admin = await key_admin(request, caller, security, AuditAction.key_created)
    try:
        new = await run_in_threadpool(
            api_keys.create_key,
            engine,
            client=body.client,
            scopes=body.scopes,
            ttl=timedelta(days=body.expires_in_days),
            by=admin,
        )
    except KeyProblem as error:
        return problem_response(request, error.status, error.detail)
    return issued(new)


@router.get("", response_model=ApiKeyList, responses=PROBLEMS)
async def list_keys(
    caller: CurrentCaller,
    engine: EngineDep,
    client: Annotated[PlainText | None, Query(description="Only this client's keys.")] = None,
) -> ApiKeyList:
    """Every key (of one client), newest first, without secrets."""
    require(access.manage_keys(caller))
    records = await run_in_threadpool(api_keys.list_keys, engine, client=client)
    return ApiKeyList(keys=[public(record) for record in records])


# A key's id as issued (api/security/api_keys.py: 16 hex digits). Anything else is refused before the
# database sees it: a NUL, say, which PostgreSQL refuses in text with an error of its own.
KeyIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="The key's id, as listed.")]


@router.post(
    "/{key_id}/rotate", status_code=status.HTTP_201_CREATED, response_model=ApiKeyIssued, responses=PROBLEMS
)
async def rotate_key(
    request: Request,
    key_id: KeyIdPath,
    caller: CurrentCaller,
    engine: EngineDep,
    security: SecurityDep,
    body: ApiKeyRotate | None = None,
) -> ApiKeyIssued | JSONResponse:
    """A successor key with the same scopes; the old one keeps working for `grace_s`, then expires."""
    admin = await key_admin(request, caller, security, AuditAction.key_rotated, key_id)
    grace = timedelta(seconds=(body or ApiKeyRotate()).grace_s)
    try:
        new = await run_in_threadpool(api_keys.rotate_key, engine, key_id=key_id, grace=grace, by=admin)
    except KeyProblem as error:
        return problem_response(request, error.status, error.detail)
    return issued(new)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=PROBLEMS)
async def revoke_key(
    request: Request, key_id: KeyIdPath, caller: CurrentCaller, engine: EngineDep, security: SecurityDep
) -> Response:
    """Revoke a key now: its requests are refused and its open streams close (4403)."""
    admin = await key_admin(request, caller, security, AuditAction.key_revoked, key_id)
    try:
        await run_in_threadpool(api_keys.revoke_key, engine, key_id=key_id, by=admin)
    except KeyProblem as error:
        return problem_response(request, error.status, error.detail)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
