"""The audit trail: every read of a citizen's data, allowed or refused, becomes one append-only record.

Records are written in batches ("group commit"): every record waiting when the writer is free goes into
one transaction, in one worker-thread hop. Each caller still waits until its own record is committed
before it answers, so no response leaves before its record exists. Why batches: every context read
writes a record, and one thread hop, one transaction and one fsync-free commit per read made the SQL
side, and the worker thread fighting the event loop for the GIL, the limit of the API (see README,
Benchmarks). A batch costs about as much as one record.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from anyio import to_thread
from sqlalchemy import Engine

from api.security.access import Decision, role_label
from api.security.principal import Caller
from api.security.pseudonyms import pseudonymise
from models import audit_repository, enquiry_repository
from models.audit_repository import AuditRow
from models.tables import AuditAction, utc_now

# The most records one transaction takes; more wait for the next one.
MAX_BATCH = 256
# Under load (the previous batch began less than BUSY_WITHIN_S ago), a batch of fewer than GATHER_UNTIL
# records first waits GATHER_S for more to join it. Each transaction costs about the same whatever it holds
# (its commit most of all), and at a steady 1,000 reads/s batches held two to four records: waiting a
# millisecond made them larger, the API's CPU per read smaller, and the reads' p50 lower (README,
# Benchmarks). A lone read, when little else happens, never waits.
GATHER_UNTIL = 16
GATHER_S = 0.001
BUSY_WITHIN_S = 0.01

# Decides a read from the enquiry the caller holds for the citizen (None when they hold none).
Rule = Callable[[str | None], Decision]


@dataclass(frozen=True)
class _Pending:
    """One record to write: its decision is either made already or made from the enquiry lookup."""

    caller: Caller
    action: AuditAction
    citizen_id: str | None
    client_address: str | None
    rule: Rule
    look_up_enquiry: bool
    done: "asyncio.Future[Decision]"
    failed: bool = False  # the action was allowed but could not complete (an erasure Kafka refused)


class Auditor:
    """Writes audit records; citizens are named by their pseudonym only."""

    def __init__(self, engine: Engine, *, pseudonym_key: str) -> None:
        self._engine = engine
        self._key = pseudonym_key
        # One writer task at a time (so one thread: SQLite takes one writer anyway), started on demand.
        self._pending: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self._last_batch_at = float("-inf")  # the event loop's time when the latest batch was taken

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
    ) -> None:
        """Append one record of `caller` doing `action` (or refused, or failed midway), once committed."""
        await self._submit(
            caller, action, citizen_id, client_address, lambda _held: decision, lookup=False, failed=failed
        )

    async def decide_and_record(
        self,
        caller: Caller,
        action: AuditAction,
        rule: Rule,
        *,
        citizen_id: str,
        client_address: str | None,
    ) -> Decision:
        """Decide a read of the citizen by `rule` and record it, in one transaction; returns once committed.

        For an agent, `rule` gets the agent's active enquiry for the citizen, read in the transaction that
        writes the record: the decision is made afresh from the database for every call, never cached.
        """
        return await self._submit(caller, action, citizen_id, client_address, rule, lookup=caller.is_agent)

    async def _submit(
        self,
        caller: Caller,
        action: AuditAction,
        citizen_id: str | None,
        client_address: str | None,
        rule: Rule,
        *,
        lookup: bool,
        failed: bool = False,
    ) -> Decision:
        done: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._pending.append(
            _Pending(
                caller,
                action,
                citizen_id,
                client_address,
                rule,
                lookup and citizen_id is not None,
                done,
                failed,
            )
        )
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="audit-writer")
        # A caller that goes away (a client disconnecting) cancels only its own future, never the batch.
        return await done

    async def _write_pending(self) -> None:
        """Write every waiting record, a batch at a time, until none waits (then the task ends)."""
        loop = asyncio.get_running_loop()
        while self._pending:
            if len(self._pending) < GATHER_UNTIL and loop.time() - self._last_batch_at < BUSY_WITHIN_S:
                await asyncio.sleep(GATHER_S)
            self._last_batch_at = loop.time()
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                decisions = await to_thread.run_sync(self._write, batch)
            except Exception as error:
                # Nothing of the batch was committed: every caller in it fails, and none answers as if
                # its read were recorded.
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(error)
                continue
            for pending, decision in zip(batch, decisions, strict=True):
                if not pending.done.done():
                    pending.done.set_result(decision)

    def _write(self, batch: list[_Pending]) -> list[Decision]:
        # A Core connection, not an ORM session: the batch needs no unit of work, and a session's set-up
        # and commit cost about 250 us of this thread's time per batch, while it holds the interpreter lock
        # the event loop serving the reads is waiting for (see README, Benchmarks).
        with self._engine.begin() as connection:
            wanted = [(p.caller.id, p.citizen_id) for p in batch if p.look_up_enquiry and p.citizen_id]
            held = enquiry_repository.holding_enquiry_ids(connection, pairs=wanted) if wanted else {}
            decisions = [
                p.rule(held.get((p.caller.id, p.citizen_id)) if p.look_up_enquiry and p.citizen_id else None)
                for p in batch
            ]
            audit_repository.add_records(
                connection,
                [self._entry(p, decision) for p, decision in zip(batch, decisions, strict=True)],
            )
            return decisions

    def _entry(self, pending: _Pending, decision: Decision) -> AuditRow:
        return AuditRow(
            at=utc_now(),
            actor_kind=pending.caller.kind,
            actor_id=pending.caller.id,
            actor_role=role_label(pending.caller),
            action=pending.action,
            outcome="failed" if pending.failed else "allowed" if decision.allowed else "denied",
            citizen=self.pseudonym(pending.citizen_id) if pending.citizen_id else None,
            enquiry_id=decision.enquiry_id,
            reason=decision.reason,
            client_address=(pending.client_address or "")[:64] or None,
        )
