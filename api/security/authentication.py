"""From a request's credentials to a `Caller`: bearer tokens, API keys, and single-use stream tickets.

Browsers cannot set headers on a WebSocket, and URLs end up in logs, so a stream proves its caller with
either a ticket (obtained over authenticated REST, valid for seconds, usable once) or the credential in
the subprotocol header (`bearer.<token or key>`), never with a lasting secret in its URL.
"""

import json
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.exceptions
import structlog
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from api.security import api_keys
from api.security.audit import Auditor
from api.security.principal import Caller, Scope
from api.security.rate_limit import RateLimiter
from api.security.settings import SecuritySettings
from api.security.tokens import InvalidToken, TokenVerifier
from context.store import TicketStore
from events.signing import ErasureSigner
from models.security import header_text
from models.tables import AgentRole

log = structlog.get_logger("security")

SUBPROTOCOL = "citizen-context.v1"
BEARER_SUBPROTOCOL = "bearer."


# What a caller with no credential is told: a browser cannot set headers on a WebSocket, so a stream says
# what it can send instead.
SIGN_IN = "Sign in: send a bearer token (Authorization) or an API key (X-API-Key)."
STREAM_SIGN_IN = "Sign in: open the stream with ?ticket= or the bearer.<credential> subprotocol."


class Unauthenticated(Exception):
    """No credential, or one that proves nothing; the message is safe to show the caller."""


class RateLimited(Exception):
    """Too many requests; retry after `retry_after_s`."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("too many requests")
        self.retry_after_s = max(1, math.ceil(retry_after_s))


@dataclass
class SecurityServices:
    """What authentication and authorisation need from the process."""

    settings: SecuritySettings
    verifier: TokenVerifier
    engine: Engine
    tickets: TicketStore
    limiter: RateLimiter
    auditor: Auditor
    erasures: ErasureSigner  # signs the erasure records the API publishes (events/signing.py)

    async def authenticate(self, headers: Headers, *, unsigned: str = SIGN_IN) -> Caller:
        """The caller a request's `Authorization: Bearer` or `X-API-Key` header proves; `unsigned` is what
        a caller with neither is told."""
        key = headers.get("x-api-key")
        if key:
            if not key.strip().startswith(f"{api_keys.PREFIX}_"):
                # An agent's token in the key's header, or anything else: named for what it is not.
                raise Unauthenticated(
                    f"Not signed in: X-API-Key holds no API key ({api_keys.PREFIX}_…); agents send their "
                    "token as Authorization: Bearer."
                )
            return await self._from_credential(key.strip())
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return await self._from_credential(credential.strip())
        raise Unauthenticated(unsigned)

    async def authenticate_stream(
        self, *, ticket: str | None, subprotocols: list[str], headers: Headers
    ) -> tuple[Caller, str | None]:
        """The caller (and any stated reason) a WebSocket proves: its ticket, subprotocol or headers.

        Headers serve clients that can set them (services, tests); browsers use a ticket or the subprotocol.
        """
        if ticket:
            payload = await self.tickets.take(ticket[:200])
            if payload is None:
                raise Unauthenticated("The stream ticket is unknown, used or expired.")
            caller, reason = _caller_from_ticket(payload)
            # The credential must still hold now, not only when the ticket was issued (a key revoked
            # in between opens nothing).
            if await self.lapse(caller) is not None:
                raise Unauthenticated("The credential behind the ticket has expired or been revoked.")
            return caller, reason
        sent = headers.get("x-access-reason")
        reason = None if sent is None else header_text(sent)
        for offered in subprotocols:
            if offered.startswith(BEARER_SUBPROTOCOL):
                return await self._from_credential(offered.removeprefix(BEARER_SUBPROTOCOL)), reason
        return await self.authenticate(headers, unsigned=STREAM_SIGN_IN), reason

    async def _from_credential(self, credential: str) -> Caller:
        try:
            if credential.startswith(f"{api_keys.PREFIX}_"):
                return await run_in_threadpool(api_keys.authenticate_key, self.engine, credential)
            known = self.verifier.verified(credential)
            if known is not None:
                return known
            if self.verifier.fetches_keys:
                return await run_in_threadpool(self.verifier.verify, credential)
            return self.verifier.verify(credential)
        except InvalidToken as error:
            raise Unauthenticated(f"Not signed in: {error.reason}.") from error
        except api_keys.InvalidKey as error:
            raise Unauthenticated(f"Not signed in: {error}.") from error

    async def limit(self, caller: Caller) -> None:
        """Count the request against the caller's rate; RateLimited when over it."""
        try:
            wait = await self.limiter.wait_s(caller)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            # The limits live in Redis. Without it, reads fail anyway (503), but an agent must still be
            # able to complete an enquiry (SQL and Kafka): the limit is waived rather than everything refused.
            log.warning("rate limits unavailable", error=type(error).__name__)
            return
        if wait > 0:
            raise RateLimited(wait)

    async def issue_ticket(self, caller: Caller, *, reason: str | None) -> str:
        """A single-use ticket that opens one stream as `caller`, within the ticket lifetime."""
        ticket = secrets.token_urlsafe(32)
        await self.tickets.issue(
            ticket, _ticket_payload(caller, reason), ttl_s=self.settings.stream_ticket_ttl_s
        )
        return ticket

    async def lapse(self, caller: Caller) -> str | None:
        """Why the caller's credential no longer holds ("expired", "revoked"), or None while it does."""
        # The same allowance for clock skew as when the token was verified.
        leeway = timedelta(seconds=self.settings.clock_skew_s if caller.is_agent else 0)
        if caller.expires_at is not None and caller.expires_at + leeway <= _now():
            return "expired"
        if caller.is_agent:
            return None  # a token holds until it expires
        return await run_in_threadpool(api_keys.lapse, self.engine, key_id=caller.id)


def _now() -> datetime:
    return datetime.now(UTC)


def _ticket_payload(caller: Caller, reason: str | None) -> str:
    document: dict[str, Any] = {
        "kind": caller.kind,
        "id": caller.id,
        "roles": sorted(role.value for role in caller.roles),
        "scopes": sorted(scope.value for scope in caller.scopes),
        "name": caller.name,
        "client": caller.client,
        "expires_at": caller.expires_at.isoformat() if caller.expires_at else None,
        "reason": reason,
    }
    return json.dumps(document)


def _caller_from_ticket(payload: str) -> tuple[Caller, str | None]:
    document = json.loads(payload)
    expires = document.get("expires_at")
    caller = Caller(
        kind=document["kind"],
        id=document["id"],
        roles=frozenset(AgentRole(role) for role in document["roles"]),
        scopes=frozenset(Scope(scope) for scope in document["scopes"]),
        name=document["name"],
        client=document["client"],
        expires_at=datetime.fromisoformat(expires) if expires else None,
    )
    return caller, document.get("reason")
