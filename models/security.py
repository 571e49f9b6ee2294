"""The security API's own models: API keys, stream tickets and audit records."""

from enum import StrEnum

from pydantic import BaseModel, Field

from models.api_key_limits import CLIENT_PATTERN, MAX_GRACE_DAYS, MAX_KEY_DAYS
from models.tables import AuditAction, StoredTime


class Scope(StrEnum):
    """What an integrator's key may do."""

    events_write = "events:write"
    context_read = "context:read"
    citizens_export = "citizens:export"
    citizens_erase = "citizens:erase"
    audit_read = "audit:read"


class ApiKeyCreate(BaseModel):
    """A new key for an integrator."""

    client: str = Field(pattern=CLIENT_PATTERN, description="Who the key is for.")
    scopes: list[Scope] = Field(min_length=1, max_length=5, description="What the key may do.")
    expires_in_days: int = Field(default=90, ge=1, le=MAX_KEY_DAYS)


class ApiKeyRotate(BaseModel):
    """How long the old key keeps working once its successor exists."""

    grace_s: int = Field(default=86_400, ge=0, le=MAX_GRACE_DAYS * 86_400)


class ApiKeyPublic(BaseModel):
    """A key as listed: never its secret."""

    id: str
    client: str
    scopes: list[Scope]
    created_at: StoredTime
    expires_at: StoredTime
    last_used_at: StoredTime | None
    revoked_at: StoredTime | None


class ApiKeyIssued(ApiKeyPublic):
    """A new key, with its secret: shown this once, stored only as a hash."""

    key: str = Field(description="Send it as `X-API-Key`. It cannot be shown again.")


class ApiKeyList(BaseModel):
    """Keys, newest first."""

    keys: list[ApiKeyPublic]


class StreamTicketRequest(BaseModel):
    """Optional: a supervisor's reason for viewing without an enquiry."""

    reason: str | None = Field(default=None, max_length=500)


class StreamTicket(BaseModel):
    """Opens one stream, once, within its lifetime: `?ticket=` on the stream's URL."""

    ticket: str
    expires_in_s: int


class AuditRecordPublic(BaseModel):
    """One access to a citizen's data."""

    id: int
    at: StoredTime
    actor_kind: str
    actor_id: str
    actor_role: str
    action: AuditAction
    outcome: str
    citizen: str | None = Field(description="The citizen's pseudonym.")
    enquiry_id: str | None
    reason: str | None
    client_address: str | None


class AuditPage(BaseModel):
    """Audit records, oldest first; pass `next_after` as `after` for the next page."""

    records: list[AuditRecordPublic]
    next_after: int | None
