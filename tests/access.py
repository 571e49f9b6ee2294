"""Credentials for tests: development tokens, signed with the development key every test process shares."""

from datetime import timedelta

from api.security import api_keys
from api.security.audit import Actor
from api.security.settings import SecuritySettings
from api.security.tokens import mint_development_token
from models.database import DatabaseSettings, create_db_engine
from models.security import Scope
from models.tables import AgentRole

REASON = "automated test"
# Who changes the tests' API keys, as the audit trail records them (as `citizen-context keys` would).
OPERATOR = Actor(kind="operator", id="test-operator", role="operator")


def token(agent_id: str = "A-test", *roles: AgentRole, ttl: timedelta = timedelta(hours=1)) -> str:
    """A development token for `agent_id` with `roles` (an agent by default)."""
    return mint_development_token(
        SecuritySettings(), agent_id=agent_id, roles=list(roles or (AgentRole.agent,)), ttl=ttl
    )


def bearer(credential: str) -> dict[str, str]:
    """Headers sending a bearer token."""
    return {"Authorization": f"Bearer {credential}"}


def agent(agent_id: str = "A-test") -> dict[str, str]:
    """Headers of an agent (who reads a citizen only while holding an enquiry for them)."""
    return bearer(token(agent_id))


def supervisor(agent_id: str = "S-test") -> dict[str, str]:
    """Headers of a supervisor who states a reason: may read any citizen (tests of reading, not of access)."""
    return {**bearer(token(agent_id, AgentRole.supervisor)), "X-Access-Reason": REASON}


def admin(agent_id: str = "AD-test") -> dict[str, str]:
    """Headers of an admin."""
    return bearer(token(agent_id, AgentRole.admin))


def new_key(database: DatabaseSettings, *scopes: Scope, client: str = "test-client") -> api_keys.IssuedKey:
    """A new integrator key with `scopes`, stored in `database`."""
    engine = create_db_engine(database)
    try:
        return api_keys.create_key(
            engine, by=OPERATOR, client=client, scopes=list(scopes), ttl=timedelta(hours=1)
        )
    finally:
        engine.dispose()


def integrator(database: DatabaseSettings, *scopes: Scope, client: str = "test-client") -> dict[str, str]:
    """Headers of an integrator whose new key has `scopes`."""
    return {"X-API-Key": new_key(database, *scopes, client=client).key}
