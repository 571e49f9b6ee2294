"""Who may do what (pure rules; the routes gather the facts, these decide).

- An agent reads a citizen only while holding an active enquiry for them.
- A supervisor may read any citizen, but only with a stated reason, which is recorded.
- An admin manages keys, reads the audit trail, and answers a citizen's export and erasure requests;
  an admin does not read live context.
- An integrator's key needs the scope of each call.
"""

from collections.abc import Callable
from dataclasses import dataclass

from api.security.principal import Caller, Scope
from models.tables import AgentRole

MAX_REASON = 500


@dataclass(frozen=True)
class Decision:
    """Allowed or not, why not (safe to show the caller), and what justified it (for the audit)."""

    allowed: bool
    detail: str = ""
    enquiry_id: str | None = None
    reason: str | None = None

    @property
    def status(self) -> int:
        """The HTTP status a refusal answers with."""
        return 200 if self.allowed else 403


ALLOW = Decision(allowed=True)
# A rule that needs nothing but the caller.
Rule = Callable[[Caller], Decision]


def deny(detail: str) -> Decision:
    """A refusal."""
    return Decision(allowed=False, detail=detail)


def role_label(caller: Caller) -> str:
    """The caller's strongest role, or the integrator's client, for the audit trail."""
    if not caller.is_agent:
        return caller.client[:32] or "integrator"
    for role in (AgentRole.admin, AgentRole.supervisor, AgentRole.agent):
        if role in caller.roles:
            return role.value
    return "none"


def read_citizen(caller: Caller, *, held_enquiry: str | None, reason: str | None) -> Decision:
    """Reading one citizen's context, timeline or stream."""
    if not caller.is_agent:
        if caller.has_scope(Scope.context_read):
            return ALLOW
        return deny("This key lacks the context:read scope.")
    if held_enquiry is not None and (
        caller.has_role(AgentRole.agent) or caller.has_role(AgentRole.supervisor)
    ):
        return Decision(allowed=True, enquiry_id=held_enquiry)
    if caller.has_role(AgentRole.supervisor):
        stated = (reason or "").strip()
        if stated:
            return Decision(allowed=True, reason=stated[:MAX_REASON])
        return deny(
            "A supervisor viewing a citizen without an enquiry must state a reason "
            "(X-Access-Reason, or ?reason= on a stream)."
        )
    if not (caller.has_role(AgentRole.agent) or caller.has_role(AgentRole.supervisor)):
        # Admins (and agents with no role) handle no enquiries: "start one" would send them the wrong way.
        return deny("Reading a citizen's context takes the agent role with an enquiry, or a supervisor's.")
    return deny("You hold no active enquiry for this citizen.")


def handle_enquiries(caller: Caller) -> Decision:
    """Starting, listing and completing one's own enquiries: agents and supervisors."""
    if caller.has_role(AgentRole.agent) or caller.has_role(AgentRole.supervisor):
        return ALLOW
    return deny("Only agents and supervisors handle enquiries.")


def lookup_identifier(caller: Caller) -> Decision:
    """Finding a citizen by phone, email or case: agents, supervisors, or context:read."""
    if caller.is_agent:
        return handle_enquiries(caller)
    return _scoped(caller, Scope.context_read)


def publish_events(caller: Caller) -> Decision:
    """Publishing events over REST: integrators with events:write."""
    return _scoped(caller, Scope.events_write)


def export_citizen(caller: Caller) -> Decision:
    """A citizen's copy of what is held: admins, or citizens:export."""
    return _admin_or(caller, Scope.citizens_export)


def erase_citizen(caller: Caller) -> Decision:
    """Erasing a citizen: admins, or citizens:erase."""
    return _admin_or(caller, Scope.citizens_erase)


def read_audit(caller: Caller) -> Decision:
    """Reading the audit trail: admins, or audit:read."""
    return _admin_or(caller, Scope.audit_read)


def manage_keys(caller: Caller) -> Decision:
    """Creating, listing, rotating and revoking API keys: admins only."""
    return ALLOW if caller.has_role(AgentRole.admin) else deny("Only admins manage API keys.")


def _scoped(caller: Caller, scope: Scope) -> Decision:
    if caller.has_scope(scope):
        return ALLOW
    if caller.is_agent:
        return deny(f"This needs an integrator key with the {scope.value} scope.")
    return deny(f"This key lacks the {scope.value} scope.")


def _admin_or(caller: Caller, scope: Scope) -> Decision:
    if caller.has_role(AgentRole.admin) or caller.has_scope(scope):
        return ALLOW
    return deny(f"This needs the admin role or the {scope.value} scope.")


def follow_enquiry(caller: Caller, *, enquiry_id: str, owns: bool, reason: str | None) -> Decision:
    """Following an enquiry's stream: its own agent, or a supervisor with a stated reason."""
    if owns and (caller.has_role(AgentRole.agent) or caller.has_role(AgentRole.supervisor)):
        return Decision(allowed=True, enquiry_id=enquiry_id)
    if caller.has_role(AgentRole.supervisor):
        stated = (reason or "").strip()
        if stated:
            return Decision(allowed=True, reason=stated[:MAX_REASON])
        return deny("A supervisor following another agent's enquiry must state a reason.")
    return deny("This enquiry is another agent's.")


def view_enquiry(caller: Caller, *, owns: bool) -> Decision:
    """Reading an enquiry's record (citizen, outcome, notes): its own agent only."""
    if owns and (caller.has_role(AgentRole.agent) or caller.has_role(AgentRole.supervisor)):
        return ALLOW
    return deny("This enquiry is another agent's.")
