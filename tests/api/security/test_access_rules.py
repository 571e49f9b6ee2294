"""The pure rules: who may do what, rates, pseudonyms."""

import pytest

from api.security import access
from api.security.principal import Caller
from api.security.pseudonyms import pseudonymise
from api.security.rate_limit import parse_rate
from models.security import Scope
from models.tables import AgentRole


def agent(*roles: AgentRole) -> Caller:
    return Caller(kind="agent", id="a-1", roles=frozenset(roles))


def key(*scopes: Scope) -> Caller:
    return Caller(kind="integrator", id="k-1", scopes=frozenset(scopes), client="crm")


def test_an_agent_reads_a_citizen_only_through_their_enquiry() -> None:
    assert access.read_citizen(agent(AgentRole.agent), held_enquiry="E-1", reason=None).enquiry_id == "E-1"
    refused = access.read_citizen(agent(AgentRole.agent), held_enquiry=None, reason="curious")
    assert not refused.allowed
    assert refused.status == 403


def test_a_supervisor_needs_an_enquiry_or_a_reason_which_is_kept() -> None:
    supervisor = agent(AgentRole.supervisor)
    assert not access.read_citizen(supervisor, held_enquiry=None, reason="  ").allowed
    granted = access.read_citizen(supervisor, held_enquiry=None, reason=" complaint CR-9 ")
    assert (granted.allowed, granted.reason) == (True, "complaint CR-9")
    assert access.read_citizen(supervisor, held_enquiry="E-2", reason=None).enquiry_id == "E-2"


def test_an_admin_manages_but_does_not_read_live_context() -> None:
    admin = agent(AgentRole.admin)
    refused = access.read_citizen(admin, held_enquiry=None, reason="because")
    assert not refused.allowed
    # Admins start no enquiries: the refusal names the roles that read, not an enquiry to start.
    assert "agent role" in refused.detail
    assert (
        "enquiry for this citizen"
        in access.read_citizen(agent(AgentRole.agent), held_enquiry=None, reason=None).detail
    )
    assert all(
        rule(admin).allowed
        for rule in (access.manage_keys, access.read_audit, access.export_citizen, access.erase_citizen)
    )
    assert not access.handle_enquiries(admin).allowed


@pytest.mark.parametrize(
    ("rule", "scope"),
    [
        (access.publish_events, Scope.events_write),
        (access.read_audit, Scope.audit_read),
        (access.export_citizen, Scope.citizens_export),
        (access.erase_citizen, Scope.citizens_erase),
        (access.lookup_identifier, Scope.context_read),
    ],
)
def test_a_key_needs_exactly_the_scope(rule: "access.Rule", scope: Scope) -> None:
    assert rule(key(scope)).allowed
    assert not rule(key(*(set(Scope) - {scope}))).allowed
    if rule is not access.lookup_identifier:  # lookups serve agents too
        assert not rule(agent(AgentRole.agent, AgentRole.supervisor)).allowed


def test_keys_never_manage_keys_nor_handle_enquiries() -> None:
    everything = key(*Scope)
    assert not access.manage_keys(everything).allowed
    assert not access.handle_enquiries(everything).allowed
    assert access.read_citizen(everything, held_enquiry=None, reason=None).allowed


def test_following_an_enquiry_is_for_its_agent_or_a_supervisor_with_a_reason() -> None:
    assert access.follow_enquiry(agent(AgentRole.agent), enquiry_id="E", owns=True, reason=None).allowed
    assert not access.follow_enquiry(agent(AgentRole.agent), enquiry_id="E", owns=False, reason="x").allowed
    supervisor = agent(AgentRole.supervisor)
    assert not access.follow_enquiry(supervisor, enquiry_id="E", owns=False, reason=None).allowed
    assert access.follow_enquiry(supervisor, enquiry_id="E", owns=False, reason="QA").reason == "QA"


@pytest.mark.parametrize(
    ("text", "interval_us", "tolerance_us"),
    [("20/second", 50_000, 950_000), ("600/minute", 100_000, 59_900_000), ("1/hour", 3_600_000_000, 0)],
)
def test_rates_become_an_interval_and_a_burst(text: str, interval_us: int, tolerance_us: int) -> None:
    rate = parse_rate(text)
    assert (rate.interval_us, rate.tolerance_us) == (interval_us, tolerance_us)


@pytest.mark.parametrize("text", ["", "20", "0/second", "20/fortnight", "-1/second", "x/minute"])
def test_a_malformed_rate_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate(text)


def test_pseudonyms_are_stable_per_key_and_reveal_nothing() -> None:
    first = pseudonymise("C-100234", key="k1")
    assert first == pseudonymise("C-100234", key="k1")
    assert first != pseudonymise("C-100234", key="k2")
    assert first != pseudonymise("C-100235", key="k1")
    assert "100234" not in first
    # Trails written before and after any change of implementation must name a citizen alike: HMAC-SHA256
    # of the id under the key, its first 24 hex digits.
    assert first == "p-9f198cf988926d9e77f3bb24"
