"""The audit trail: every read of a citizen's data, allowed or refused, becomes one append-only record."""

from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.security.access import Decision, role_label
from api.security.principal import Caller
from api.security.pseudonyms import pseudonymise
from models import audit_repository
from models.tables import AuditAction, AuditRecord


class Auditor:
    """Writes audit records; citizens are named by their pseudonym only."""

    def __init__(self, engine: Engine, *, pseudonym_key: str) -> None:
        self._engine = engine
        self._key = pseudonym_key

    def pseudonym(self, citizen_id: str) -> str:
        """The citizen's pseudonym, as the trail and the logs name them."""
        return pseudonymise(citizen_id, key=self._key)

    async def record(
        self,
        caller: Caller,
        action: AuditAction,
        decision: Decision,
        *,
        citizen_id: str | None,
        client_address: str | None,
        failed: bool = False,
    ) -> AuditRecord:
        """Append one record of `caller` doing `action` (or being refused it, or it failing midway)."""
        record = AuditRecord(
            actor_kind=caller.kind,
            actor_id=caller.id,
            actor_role=role_label(caller),
            action=action,
            outcome="failed" if failed else "allowed" if decision.allowed else "denied",
            citizen=self.pseudonym(citizen_id) if citizen_id else None,
            enquiry_id=decision.enquiry_id,
            reason=decision.reason,
            client_address=(client_address or "")[:64] or None,
        )

        def add() -> AuditRecord:
            with Session(self._engine) as session:
                return audit_repository.add_record(session, record)

        return await run_in_threadpool(add)
