"""Callers: an agent signed in through the identity provider, or an integrator's API key."""

from dataclasses import dataclass, field
from datetime import datetime

from models.security import Scope
from models.tables import AgentRole

__all__ = ["Caller", "Scope"]


@dataclass(frozen=True)
class Caller:
    """Who is calling, as proved by a token or a key."""

    kind: str  # "agent" or "integrator"
    id: str  # the agent's `sub`, or the key's id
    roles: frozenset[AgentRole] = frozenset()
    scopes: frozenset[Scope] = frozenset()
    name: str = ""
    client: str = ""  # the integrator a key belongs to
    expires_at: datetime | None = None  # when the credential stops being valid
    token_id: str = field(default="", compare=False)

    @property
    def is_agent(self) -> bool:
        """Signed in through the identity provider (agent, supervisor or admin)."""
        return self.kind == "agent"

    def has_role(self, role: AgentRole) -> bool:
        """Whether the token grants `role`."""
        return self.is_agent and role in self.roles

    def has_scope(self, scope: Scope) -> bool:
        """Whether the key grants `scope`."""
        return self.kind == "integrator" and scope in self.scopes

    @property
    def rate_key(self) -> str:
        """What rate limits count against."""
        return f"{self.kind}:{self.id}"
