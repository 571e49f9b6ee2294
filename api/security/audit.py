"""The audit trail: every read of a citizen's data, allowed or refused, becomes one append-only record.

Records are written in batches ("group commit"): every record waiting when the writer is free goes into
one INSERT, committed as one. Each caller still waits until its own record is committed before it
answers, so no response leaves before its record exists. Why batches: every context read writes a record,
and one thread hop, one transaction and one commit per read made the SQL side, and the worker thread
fighting the event loop for the GIL, the limit of the API (see README, Benchmarks). A batch costs about
as much as one record.

The writer is a thread of its own that takes the next batch as soon as one is committed. When a coroutine
on the event loop handed each batch to a worker thread instead, every batch also waited for the busy loop
to run that coroutine again (to take its result and hand over the next batch): at 64 connections that
wait made the audit's cycle, and so every read, longer, and reads/s lower (see README, Benchmarks).

A batch the database refuses for one record's data (PostgreSQL refuses a NUL in text) is written again a
record at a time, so that only the caller of the record refused fails, not every read that shared its batch.
"""

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from api.security.access import Decision, role_label
from api.security.principal import Caller
from api.security.pseudonyms import pseudonymise
from models import audit_repository, enquiry_repository
from models.audit_repository import AuditRow
from models.tables import AuditAction, utc_now

# The most records one batch takes (more wait for the next one): one INSERT statement's worth, so that on
# an autocommit engine a batch is stored whole or not at all.
MAX_BATCH = audit_repository.ROWS_PER_STATEMENT
# Under load (the previous batch began less than BUSY_WITHIN_S ago), a batch of fewer than GATHER_UNTIL
# records first waits GATHER_S for more to join it. Each batch costs about the same whatever it holds
# (its commit most of all), and at a steady 1,000 reads/s batches held two to four records: waiting a
# millisecond made them larger, the API's CPU per read smaller, and the reads' p50 lower (README,
# Benchmarks). A lone read, when little else happens, never waits.
GATHER_UNTIL = 16
GATHER_S = 0.001
BUSY_WITHIN_S = 0.01
# The writer thread ends once it has had nothing to write for this long (the next record starts another).
IDLE_EXIT_S = 10.0

log = structlog.get_logger("security")

# Decides a read from the enquiry the caller holds for the citizen (None when they hold none).
Rule = Callable[[str | None], Decision]
# What each caller of a batch is answered: its decision, or why its record could not be written.
Outcome = Decision | Exception


@dataclass(frozen=True)
class Actor:
    """Who changed an API key, as the trail names them: an admin through the API, or an operator at the
    server's command line (`citizen-context keys`)."""

    kind: str
    id: str
    role: str
    client_address: str | None = None

    @classmethod
    def calling(cls, caller: Caller, client_address: str | None) -> "Actor":
        """The API's caller."""
        return cls(caller.kind, caller.id, role_label(caller), client_address)


def key_change(actor: Actor, action: AuditAction, *, key_id: str, reason: str | None = None) -> AuditRow:
    """The record of a change of an API key, allowed and done (written with the change, in its
    transaction: no key changes without its record). Every value is cut to its column's size."""
    return AuditRow(
        at=utc_now(),
        actor_kind=actor.kind[:16],
        actor_id=actor.id[:200],
        actor_role=actor.role[:32],
        action=action,
        outcome="allowed",
        citizen=None,
        enquiry_id=None,
        reason=None if reason is None else reason[:500],
        client_address=(actor.client_address or "")[:64] or None,
        api_key_id=key_id[:32],
    )


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
    api_key_id: str | None = None  # the key an API key change was refused for


class Auditor:
    """Writes audit records; citizens are named by their pseudonym only.

    Give it an autocommit engine (`create_db_engine(settings, autocommit=True)`), as the app does: each
    batch is then one INSERT that commits as it runs, with no BEGIN and no COMMIT around it. SQLite's
    driver lets go of the interpreter lock around each of those statements, and every time, the writer
    waited to get it back from the busy event loop (README, Benchmarks). Any engine works.
    """

    def __init__(self, engine: Engine, *, pseudonym_key: str, idle_exit_s: float = IDLE_EXIT_S) -> None:
        self._engine = engine
        self._key = pseudonym_key
        self._idle_exit_s = idle_exit_s
        # One writer thread at a time (SQLite takes one writer anyway), started on demand. The lock guards
        # the waiting records, the thread's handle and `_closed`; callers on the event loop hold it only to
        # append a record.
        self._wake = threading.Condition()
        self._pending: list[_Pending] = []
        self._writer: threading.Thread | None = None
        self._closed = False
        self._last_batch_at = float("-inf")  # when the latest batch was taken (time.monotonic)

    @property
    def writing(self) -> bool:
        """Whether a writer thread is running (it ends when idle, or soon after `close`)."""
        with self._wake:
            return self._writer is not None

    def close(self, *, wait_s: float = 0.0) -> None:
        """Let the writer thread end as soon as it has written what waits, waiting up to `wait_s` for it
        (at the app's shutdown, before the engine goes).

        A record submitted afterwards is still written, by a thread that ends once it is done.
        """
        with self._wake:
            self._closed = True
            self._wake.notify()
            writer = self._writer
        if writer is not None and wait_s > 0:
            writer.join(wait_s)

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
        api_key_id: str | None = None,
    ) -> None:
        """Append one record of `caller` doing `action` (or refused, or failed midway), once committed."""
        await self._submit(
            caller,
            action,
            citizen_id,
            client_address,
            lambda _held: decision,
            lookup=False,
            failed=failed,
            api_key_id=api_key_id,
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
        """Decide a read of the citizen by `rule` and record it, in one batch; returns once committed.

        For an agent, `rule` gets the agent's active enquiry for the citizen, read just before the record
        is written: the decision is made afresh from the database for every call, never cached.
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
        api_key_id: str | None = None,
    ) -> Decision:
        done: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        pending = _Pending(
            caller,
            action,
            citizen_id,
            client_address,
            rule,
            lookup and citizen_id is not None,
            done,
            failed,
            api_key_id,
        )
        with self._wake:
            self._pending.append(pending)
            if self._writer is None:
                # A daemon: at exit, a batch cut short is rolled back, and its callers never answered.
                writer = threading.Thread(target=self._write_pending, name="audit-writer", daemon=True)
                try:
                    writer.start()
                except RuntimeError:
                    # No thread to be had (the process is at its limit): this caller fails. It is the only
                    # record waiting, as no writer runs and every record that came earlier started one.
                    self._pending.remove(pending)
                    raise
                self._writer = writer
            else:
                self._wake.notify()
        # A caller that goes away (a client disconnecting) cancels only its own future, never the batch.
        return await done

    def _write_pending(self) -> None:
        """On the writer thread: write every waiting record, a batch at a time, until idle (or closed)."""
        batch: list[_Pending] = []
        try:
            while True:
                with self._wake:
                    self._wake.wait_for(lambda: self._pending or self._closed, self._idle_exit_s)
                    if not self._pending:
                        # Nothing came: the thread ends. A record submitted from now on starts another
                        # (under this same lock, so no record waits for a thread that has ended).
                        self._writer = None
                        return
                    gather = (
                        len(self._pending) < GATHER_UNTIL
                        and time.monotonic() - self._last_batch_at < BUSY_WITHIN_S
                    )
                if gather:
                    time.sleep(GATHER_S)
                with self._wake:
                    self._last_batch_at = time.monotonic()
                    batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    outcome: Sequence[Outcome] | Exception = self._write(batch)
                except Exception as error:
                    # Nothing of the batch was committed (its records go in one statement, or one
                    # transaction): every caller in it fails, and none answers as if its read were recorded.
                    outcome = error
                _hand_back(batch, outcome)
                batch = []
        except BaseException:
            # Whatever stopped the thread (a fault in it, not a failed batch), no caller may wait forever
            # for it: the batch in hand and every waiting record fail, and the next record starts a new
            # writer.
            with self._wake:
                self._writer = None
                stranded, self._pending = batch + self._pending, []
            _hand_back(stranded, RuntimeError("the audit writer stopped unexpectedly"))
            raise

    def _write(self, batch: list[_Pending]) -> Sequence[Outcome]:
        # A Core connection, not an ORM session: the batch needs no unit of work, and a session's set-up
        # and commit cost about 250 us of this thread's time per batch, while it holds the interpreter lock
        # the event loop serving the reads is waiting for (see README, Benchmarks).
        with self._engine.connect() as connection:
            wanted = [(p.caller.id, p.citizen_id) for p in batch if p.look_up_enquiry and p.citizen_id]
            held = enquiry_repository.holding_enquiry_ids(connection, pairs=wanted) if wanted else {}
            decisions = [
                p.rule(held.get((p.caller.id, p.citizen_id)) if p.look_up_enquiry and p.citizen_id else None)
                for p in batch
            ]
            rows = [self._entry(p, decision) for p, decision in zip(batch, decisions, strict=True)]
            try:
                audit_repository.add_records(connection, rows)
                # On an autocommit engine the INSERT committed as it ran, and this does nothing; on any
                # other, it commits the batch.
                connection.commit()
            except (DataError, IntegrityError, UnicodeError) as error:
                # A value of some record the database refuses (a NUL, which PostgreSQL refuses in text, or
                # text its driver cannot encode, which no validated value should be) fails the whole
                # statement, and with it every other caller's read. Nothing was stored: each record is
                # written on its own, and only the refused ones' callers fail. Any other error (the
                # database gone) would fail each record alike, and fails the batch as before.
                connection.rollback()
                log.warning("audit batch refused, writing it record by record", error=type(error).__name__)
                return [
                    _write_one(connection, row, decision)
                    for row, decision in zip(rows, decisions, strict=True)
                ]
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
            api_key_id=pending.api_key_id,
        )


def _write_one(connection: Connection, row: AuditRow, decision: Decision) -> Outcome:
    """One record of a refused batch, committed on its own: its decision, or the error that refused it."""
    try:
        audit_repository.add_records(connection, [row])
        connection.commit()
    except (SQLAlchemyError, UnicodeError) as error:
        connection.rollback()
        # The error's type only: its message quotes the statement, and may quote the values refused.
        log.error("audit record refused", action=row["action"], error=type(error).__name__)
        return error
    return decision


def _hand_back(batch: list[_Pending], outcome: Sequence[Outcome] | Exception) -> None:
    """From the writer thread: give each caller its decision (or the batch's error) on its own event loop."""
    results: list[Outcome] = [outcome] * len(batch) if isinstance(outcome, Exception) else list(outcome)
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending, Outcome]]] = {}
    for pending, result in zip(batch, results, strict=True):
        by_loop.setdefault(pending.done.get_loop(), []).append((pending, result))
    for loop, answers in by_loop.items():
        # A loop that has closed refuses: its callers are gone.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, answers)


def _settle(answers: list[tuple[_Pending, Outcome]]) -> None:
    """On the callers' event loop: settle each caller's future, unless it went away meanwhile."""
    for pending, result in answers:
        if pending.done.done():
            continue
        if isinstance(result, Exception):
            pending.done.set_exception(result)
        else:
            pending.done.set_result(result)
