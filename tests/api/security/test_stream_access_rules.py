"""When an open stream's access has lapsed, as a pure rule over what the database holds."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from sqlalchemy import create_engine

from api.security.access import Decision
from api.security.authentication import SecurityServices
from api.security.principal import Caller
from api.security.settings import SecuritySettings
from api.security.stream_access import (
    CLOSE_ACCESS_ENDED,
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHENTICATED,
    Holdings,
    StreamAccessChecks,
    WatchedStream,
    lapse_code,
)
from api.streaming import AccessEnded, Subscription

NOW = datetime(2025, 1, 1, 12, tzinfo=UTC)
LEEWAY = timedelta(seconds=30)


def stream(caller: Caller, enquiry_id: str | None = "E-1") -> WatchedStream:
    return WatchedStream(caller, Decision(allowed=True, enquiry_id=enquiry_id), Subscription("C-1", 4))


def agent(expires_at: datetime | None = None) -> Caller:
    return Caller(kind="agent", id="agent-a", expires_at=expires_at)


def holdings(
    active: frozenset[str] = frozenset({"E-1"}), keys: dict[str, str | None] | None = None
) -> Holdings:
    return Holdings(active_enquiries=frozenset(active), key_lapses=keys or {})


def code(watched: WatchedStream, held: Holdings) -> int | None:
    return lapse_code(watched, held, now=NOW, leeway=LEEWAY)


def test_an_active_enquiry_and_a_valid_token_hold() -> None:
    assert code(stream(agent(NOW + timedelta(minutes=5))), holdings()) is None


def test_an_ended_enquiry_closes_with_4410() -> None:
    assert code(stream(agent()), holdings(active=frozenset())) == CLOSE_ACCESS_ENDED


def test_a_citizens_stream_holds_while_its_agent_holds_any_enquiry_for_the_citizen() -> None:
    opened = WatchedStream(agent(), Decision(allowed=True, enquiry_id="E-1"), Subscription("C-1", 4), "C-1")
    # E-1 is over either way; what counts is whether the agent holds an enquiry for C-1.
    held, elsewhere = frozenset({("agent-a", "C-1")}), frozenset({("agent-a", "C-2")})
    assert code(opened, Holdings(frozenset(), {}, holders=held)) is None
    assert code(opened, Holdings(frozenset(), {}, holders=elsewhere)) == CLOSE_ACCESS_ENDED


def test_a_stream_without_an_enquiry_needs_none() -> None:
    assert code(stream(agent(), enquiry_id=None), holdings(active=frozenset())) is None


def test_an_agent_token_expires_after_the_clock_skew_leeway() -> None:
    assert code(stream(agent(NOW - timedelta(seconds=10))), holdings()) is None
    assert code(stream(agent(NOW - LEEWAY)), holdings()) == CLOSE_UNAUTHENTICATED


def test_a_key_has_no_leeway_and_its_record_decides() -> None:
    key = Caller(kind="integrator", id="K-1", expires_at=NOW)
    assert code(stream(key), holdings()) == CLOSE_UNAUTHENTICATED
    key = Caller(kind="integrator", id="K-1")
    assert code(stream(key), holdings(keys={"K-1": None})) is None
    assert code(stream(key), holdings(keys={"K-1": "revoked"})) == CLOSE_FORBIDDEN
    assert code(stream(key), holdings(keys={"K-1": "expired"})) == CLOSE_UNAUTHENTICATED


def test_a_lapsed_credential_wins_over_an_ended_enquiry() -> None:
    expired = agent(NOW - timedelta(hours=1))
    assert code(stream(expired), holdings(active=frozenset())) == CLOSE_UNAUTHENTICATED


async def test_expired_tokens_still_close_their_streams_while_the_database_cannot_be_read(
    tmp_path: Path,
) -> None:
    """Enquiries and keys are not assumed lapsed when the database fails; expiry needs no database."""
    unreadable = create_engine(f"sqlite:///{tmp_path / 'no-such-directory' / 'api.db'}")
    security = SimpleNamespace(settings=SecuritySettings(), engine=unreadable)
    checks = StreamAccessChecks(cast(SecurityServices, security))
    now = datetime.now(UTC)
    expired, valid = Subscription("C-1", 4), Subscription("C-2", 4)
    decision = Decision(allowed=True, enquiry_id="E-1")
    with (
        checks.watching(agent(expires_at=now - timedelta(hours=1)), decision, expired),
        checks.watching(agent(expires_at=now + timedelta(hours=1)), decision, valid),
    ):
        await checks.check()
        assert await asyncio.wait_for(expired.next(), timeout=1) == AccessEnded(
            CLOSE_UNAUTHENTICATED, "credential expired"
        )
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(valid.next(), timeout=0.2)
    unreadable.dispose()
