"""The security API's own models: API keys, stream tickets and audit records."""

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from models.api_key_limits import CLIENT_PATTERN, MAX_GRACE_DAYS, MAX_KEY_DAYS
from models.bodies import RequestBody
from models.tables import AuditAction, StoredTime

# C0 controls, DEL and C1 controls. A stated reason or a filter is a line of prose or a name: a control
# character in it is a mistake or an attack, and PostgreSQL refuses a NUL in text outright, failing the
# statement it is in (the audit trail writes many callers' records in one). A reason sent in a header is
# read back as the UTF-8 text it was sent as first (`header_text`): decoded as Latin-1, as HTTP headers
# reach the app, a dash's bytes would be C1 characters.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
NO_CONTROL_CHARACTERS = "Must not contain control characters"
# A lone surrogate (U+D800 to U+DFFF): a JSON text's unpaired escape ("\\ud800") reads as one, and no UTF-8
# text can hold it. Redis and the SQL drivers fail the whole command or statement it is in, and the audit
# trail writes many callers' records in one.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
NOT_UNICODE = "Must be Unicode text: an unpaired surrogate (a lone \\ud800 to \\udfff escape) is not"


def header_text(value: str) -> str:
    """A header's text as its sender wrote it: HTTP headers reach the app decoded as Latin-1, one character
    per byte, and the bytes of a reason typed in Welsh or with a dash are UTF-8. A value that is not UTF-8
    is kept as it came (pure)."""
    if value.isascii():
        return value  # nearly every reason: nothing to read again
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def has_control_characters(text: str) -> bool:
    """Whether `text` holds a control character (a NUL, a tab, a line break, an escape...)."""
    return _CONTROL_CHARACTER.search(text) is not None


def has_lone_surrogates(text: str) -> bool:
    """Whether `text` holds a lone surrogate, which no UTF-8 text can (see _LONE_SURROGATE)."""
    return _LONE_SURROGATE.search(text) is not None


def _plain(text: str) -> str:
    if has_control_characters(text):
        raise PydanticCustomError("control_characters", NO_CONTROL_CHARACTERS)
    if has_lone_surrogates(text):
        raise PydanticCustomError("string_unicode", NOT_UNICODE)
    return text


# Text a caller states or filters by, on its way to SQL. The pattern only describes the check in the
# OpenAPI document: the validator makes it, with a clearer message than a pattern's.
PlainText = Annotated[
    str,
    AfterValidator(_plain),
    Field(json_schema_extra={"pattern": r"^[^\u0000-\u001f\u007f-\u009f]*$"}),
]


# The same, sent in a header: read back as the UTF-8 text it was sent as before it is checked.
HeaderText = Annotated[
    PlainText, BeforeValidator(lambda value: header_text(value) if isinstance(value, str) else value)
]


class Scope(StrEnum):
    """What an integrator's key may do."""

    events_write = "events:write"
    context_read = "context:read"
    citizens_export = "citizens:export"
    citizens_erase = "citizens:erase"
    audit_read = "audit:read"


class ApiKeyCreate(RequestBody):
    """A new key for an integrator."""

    client: str = Field(pattern=CLIENT_PATTERN, description="Who the key is for.")
    scopes: list[Scope] = Field(min_length=1, max_length=5, description="What the key may do.")
    expires_in_days: int = Field(default=90, ge=1, le=MAX_KEY_DAYS)


class ApiKeyRotate(RequestBody):
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


class StreamTicketRequest(RequestBody):
    """Optional: a supervisor's reason for viewing without an enquiry."""

    reason: PlainText | None = Field(default=None, max_length=500)


class StreamTicket(BaseModel):
    """Opens one stream, once, within its lifetime: `?ticket=` on the stream's URL."""

    ticket: str
    expires_in_s: int


class AuditRecordPublic(BaseModel):
    """One access to a citizen's data, or one change of an API key."""

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
    api_key_id: str | None = Field(description="The API key created, rotated or revoked (its id).")


class AuditPage(BaseModel):
    """Audit records, oldest first; pass `next_after` as `after` for the next page."""

    records: list[AuditRecordPublic]
    next_after: int | None
