"""The audit trail in batches: many reads at once, each decided from the database and recorded once."""

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, func
from sqlmodel import Session, col, select

from api.security import access
from api.security.audit import Actor, Auditor, key_change
from api.security.principal import Caller
from models import audit_repository, enquiry_repository
from models.audit_repository import AuditRow
from models.database import DatabaseSettings, create_db_engine, migrate
from models.tables import AgentRole, AuditAction, AuditRecord, AuditRecordBase, Enquiry, as_utc, utc_now


@pytest.fixture(params=[True, False], ids=["autocommit", "transactions"])
def engine(database_settings: DatabaseSettings, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An engine on the test database, disposed afterwards: in autocommit, as the app gives the auditor,
    and with transactions, which works as well."""
    created = create_db_engine(database_settings, autocommit=request.param)
    yield created
    created.dispose()


def agent(agent_id: str) -> Caller:
    return Caller(kind="agent", id=agent_id, roles=frozenset({AgentRole.agent}))


@pytest.mark.parametrize("autocommit", [True, False], ids=["autocommit", "transactions"])
async def test_concurrent_reads_are_each_decided_and_recorded_once(
    sql_database: DatabaseSettings, autocommit: bool
) -> None:
    migrate(sql_database)
    engine = create_db_engine(sql_database, autocommit=autocommit)
    try:
        with Session(engine) as session:
            held = {
                (f"A-{a}", f"C-{c}"): enquiry_repository.create_enquiry(
                    session, agent_id=f"A-{a}", citizen_id=f"C-{c}", channel="phone"
                ).id
                for a in range(3)
                for c in range(0, 20, a + 1)
            }
            # A newer enquiry for the same pair is the one a read is recorded under.
            newer = enquiry_repository.create_enquiry(
                session, agent_id="A-0", citizen_id="C-0", channel="chat"
            )
            held[("A-0", "C-0")] = newer.id
        auditor = Auditor(engine, pseudonym_key="k" * 32)
        reads = [(f"A-{a}", f"C-{c}") for a in range(3) for c in range(20)]

        async def read(agent_id: str, citizen_id: str) -> access.Decision:
            caller = agent(agent_id)
            return await auditor.decide_and_record(
                caller,
                AuditAction.context_read,
                lambda enquiry: access.read_citizen(caller, held_enquiry=enquiry, reason=None),
                citizen_id=citizen_id,
                client_address="127.0.0.1",
            )

        decisions = await asyncio.gather(*(read(a, c) for a, c in reads))
        for (agent_id, citizen_id), decision in zip(reads, decisions, strict=True):
            assert decision.allowed == ((agent_id, citizen_id) in held)
            assert decision.enquiry_id == held.get((agent_id, citizen_id))
        with Session(engine) as session:
            records = session.exec(select(AuditRecord).order_by(col(AuditRecord.id))).all()
        assert len(records) == len(reads)
        expected = sorted(
            (a, auditor.pseudonym(c), held.get((a, c)), "allowed" if (a, c) in held else "denied")
            for a, c in reads
        )
        assert sorted((r.actor_id, r.citizen, r.enquiry_id, r.outcome) for r in records) == expected
    finally:
        engine.dispose()


async def test_a_failed_batch_fails_every_read_in_it(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE audit_records")
    auditor = Auditor(engine, pseudonym_key="k" * 32)
    caller = Caller(kind="integrator", id="k-1", client="crm")
    results = await asyncio.gather(
        *(
            auditor.record(caller, AuditAction.lookup, access.ALLOW, citizen_id=f"C-{n}", client_address=None)
            for n in range(5)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(result, Exception) for result in results)


@pytest.mark.parametrize("count", [1, 300])
async def test_every_record_is_committed_before_its_caller_goes_on(engine: Engine, count: int) -> None:
    auditor = Auditor(engine, pseudonym_key="k" * 32)
    caller = Caller(kind="integrator", id="k-1", client="crm")
    await asyncio.gather(
        *(
            auditor.record(caller, AuditAction.export, access.ALLOW, citizen_id="C-1", client_address=None)
            for _ in range(count)
        )
    )
    assert stored_count(engine) == count


async def test_each_batch_is_one_statement_so_it_is_stored_whole_or_not_at_all(engine: Engine) -> None:
    # On an autocommit engine each statement commits on its own: a batch split over two would leave the
    # first part stored while every caller of the batch was told it failed.
    auditor = Auditor(engine, pseudonym_key="k" * 32)
    inserts_per_batch: list[int] = []
    inserts: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.startswith("INSERT"):
            inserts.append(statement)

    write = auditor._write

    def counted_write(batch: Any) -> Any:
        before = len(inserts)
        try:
            return write(batch)
        finally:
            inserts_per_batch.append(len(inserts) - before)

    auditor._write = counted_write  # type: ignore[method-assign]
    event.listen(engine, "before_cursor_execute", count)
    try:
        count_of_records = 3 * audit_repository.ROWS_PER_STATEMENT
        await asyncio.gather(*(export(auditor, "C-1") for _ in range(count_of_records)))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert stored_count(engine) == count_of_records
    assert len(inserts_per_batch) >= 3  # more records than one statement takes: several batches
    assert set(inserts_per_batch) == {1}


def stored_count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(AuditRecord)).one()


async def eventually(condition: Any, *, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def export(auditor: Auditor, citizen_id: str) -> None:
    """One record, and a failure rather than a hung test if the writer never answers."""
    caller = Caller(kind="integrator", id="k-1", client="crm")
    await asyncio.wait_for(
        auditor.record(caller, AuditAction.export, access.ALLOW, citizen_id=citizen_id, client_address=None),
        timeout=10,
    )


async def test_the_writer_thread_ends_when_idle_and_the_next_record_starts_another(
    engine: Engine,
) -> None:
    auditor = Auditor(engine, pseudonym_key="k" * 32, idle_exit_s=0.05)
    await export(auditor, "C-1")
    assert await eventually(lambda: not auditor.writing)
    await export(auditor, "C-2")
    assert stored_count(engine) == 2


async def test_a_closed_auditor_lets_its_writer_end_at_once_and_still_writes_late_records(
    engine: Engine,
) -> None:
    # Idle, the writer would wait a minute before ending; closing ends it now.
    auditor = Auditor(engine, pseudonym_key="k" * 32, idle_exit_s=60)
    await export(auditor, "C-1")
    assert auditor.writing
    auditor.close(wait_s=5)
    assert not auditor.writing
    await export(auditor, "C-2")
    assert await eventually(lambda: not auditor.writing, timeout_s=5)
    assert stored_count(engine) == 2


class WriterFault(BaseException):
    """Not an Exception: it gets past the per-batch handling, as a fault in the writer itself would."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_fault_that_stops_the_writer_fails_its_callers_and_the_next_record_starts_another(
    engine: Engine,
) -> None:
    auditor = Auditor(engine, pseudonym_key="k" * 32)
    caller = Caller(kind="integrator", id="k-1", client="crm")

    def fault(_held: str | None) -> access.Decision:
        raise WriterFault

    with pytest.raises(RuntimeError, match="audit writer stopped"):
        await asyncio.wait_for(
            auditor.decide_and_record(
                caller, AuditAction.context_read, fault, citizen_id="C-1", client_address=None
            ),
            timeout=10,
        )
    assert await eventually(lambda: not auditor.writing)
    await export(auditor, "C-2")
    assert stored_count(engine) == 1


BOUND_S = 30.0


def test_callers_on_different_event_loops_each_get_their_own_decisions(
    sql_database: DatabaseSettings,
) -> None:
    migrate(sql_database)
    engine = create_db_engine(sql_database, autocommit=True)
    try:
        with Session(engine) as session:
            held = enquiry_repository.create_enquiry(
                session, agent_id="A-1", citizen_id="C-1", channel="phone"
            )
        auditor = Auditor(engine, pseudonym_key="k" * 32)

        async def reads(citizen: str) -> tuple[list[str | None], float]:
            started = time.monotonic()
            reading = asyncio.gather(
                *(
                    auditor.decide_and_record(
                        agent("A-1"),
                        AuditAction.context_read,
                        lambda enquiry: access.read_citizen(agent("A-1"), held_enquiry=enquiry, reason=None),
                        citizen_id=citizen,
                        client_address=None,
                    )
                    for _ in range(50)
                )
            )
            # A decision settled from another loop's thread never wakes this loop: only the bound's own
            # timer would, after BOUND_S. So the answers must come well before it (they take milliseconds).
            decisions = await asyncio.wait_for(reading, timeout=BOUND_S)
            return [decision.enquiry_id for decision in decisions], time.monotonic() - started

        # Two threads, each with its own event loop, read at once: a batch may hold callers of both.
        with ThreadPoolExecutor(max_workers=2) as threads:
            holding = threads.submit(asyncio.run, reads("C-1"))
            not_holding = threads.submit(asyncio.run, reads("C-2"))
            held_ids, took_holding = holding.result(timeout=60)
            none_held, took_not_holding = not_holding.result(timeout=60)
        assert held_ids == [held.id] * 50
        assert none_held == [None] * 50
        assert max(took_holding, took_not_holding) < BOUND_S / 2
        assert stored_count(engine) == 100
    finally:
        engine.dispose()


def test_an_inserted_row_holds_every_field_of_a_record() -> None:
    assert set(AuditRow.__annotations__) == set(AuditRecordBase.model_fields)


async def test_a_record_is_stored_with_every_field_as_decided(sql_database: DatabaseSettings) -> None:
    migrate(sql_database)
    engine = create_db_engine(sql_database, autocommit=True)
    try:
        auditor = Auditor(engine, pseudonym_key="k" * 32)
        caller = Caller(kind="agent", id="A-7", roles=frozenset({AgentRole.supervisor}))
        before = utc_now()
        decision = await auditor.decide_and_record(
            caller,
            AuditAction.context_read,
            lambda enquiry: access.read_citizen(caller, held_enquiry=enquiry, reason="the citizen called"),
            citizen_id="C-9",
            client_address="203.0.113.9" + "0" * 80,
        )
        with Session(engine) as session:
            record = session.exec(select(AuditRecord)).one()
        assert (record.actor_kind, record.actor_id, record.actor_role) == ("agent", "A-7", "supervisor")
        assert (record.action, record.outcome) == (AuditAction.context_read, "allowed")
        assert record.citizen == auditor.pseudonym("C-9") != "C-9"
        assert (record.enquiry_id, record.reason) == (None, "the citizen called") == (None, decision.reason)
        assert record.client_address == ("203.0.113.9" + "0" * 80)[:64]
        at = record.at if record.at.tzinfo else record.at.replace(tzinfo=before.tzinfo)
        assert before <= at <= utc_now()
    finally:
        engine.dispose()


async def test_the_longest_values_a_caller_brings_still_fit_the_record(
    sql_database: DatabaseSettings,
) -> None:
    # Rows are not validated on their way in (see AuditRow): every value must be bounded where it is made.
    migrate(sql_database)
    engine = create_db_engine(sql_database, autocommit=True)
    try:
        auditor = Auditor(engine, pseudonym_key="k" * 32)
        supervisor = Caller(kind="agent", id="A" * 200, roles=frozenset({AgentRole.supervisor}))
        integrator = Caller(kind="integrator", id="K" * 200, client="c" * 300)
        await auditor.decide_and_record(
            supervisor,
            AuditAction.context_read,
            lambda enquiry: access.read_citizen(supervisor, held_enquiry=enquiry, reason="r" * 5000),
            citizen_id="C-" + "9" * 120,
            client_address="2001:db8::" + "f" * 300,
        )
        await auditor.record(
            integrator, AuditAction.lookup, access.ALLOW, citizen_id="C-1", client_address="x" * 300
        )
        operator = Actor(kind="o" * 100, id="o" * 300, role="r" * 100, client_address="x" * 300)
        with engine.begin() as connection:
            change = key_change(operator, AuditAction.key_rotated, key_id="k" * 40, reason="s" * 600)
            audit_repository.add_records(connection, [change])
        with Session(engine) as session:
            records = session.exec(select(AuditRecord)).all()
        assert len(records) == 3
        for record in records:
            AuditRecordBase.model_validate(record.model_dump())  # raises if any value outgrew its column
    finally:
        engine.dispose()


def test_records_beyond_one_statement_are_all_stored_in_their_order(sql_database: DatabaseSettings) -> None:
    migrate(sql_database)
    engine = create_db_engine(sql_database)
    rows = [
        AuditRow(
            at=utc_now(),
            actor_kind="agent",
            actor_id=f"A-{number}",
            actor_role="agent",
            action=AuditAction.timeline_read,
            outcome="allowed",
            citizen=None,
            enquiry_id=None,
            reason=None,
            client_address=None,
            api_key_id=None,
        )
        for number in range(audit_repository.ROWS_PER_STATEMENT + 3)
    ]
    try:
        with engine.begin() as connection:
            audit_repository.add_records(connection, rows)
        with Session(engine) as session:
            stored = session.exec(select(AuditRecord).order_by(col(AuditRecord.id))).all()
        assert [record.actor_id for record in stored] == [row["actor_id"] for row in rows]
        assert [as_utc(record.at) for record in stored] == [row["at"] for row in rows]
        assert {record.action for record in stored} == {AuditAction.timeline_read}
    finally:
        engine.dispose()


@pytest.fixture
def many_active_enquiries(tmp_path: Path) -> Any:
    """An SQLite database at the latest revision holding 2,000 active enquiries of two agents."""
    settings = DatabaseSettings(url=f"sqlite:///{tmp_path / 'plan.db'}")
    migrate(settings)
    engine = create_db_engine(settings)
    with Session(engine) as session:
        session.add_all(
            Enquiry(id=f"E-{number}", agent_id=f"A-{number % 2}", citizen_id=f"C-{number}", channel="phone")
            for number in range(2_000)
        )
        session.commit()
    yield engine
    engine.dispose()


def query_plan(connection: Connection, run: Any) -> tuple[Any, list[Any]]:
    """What `run(connection)` returns, and SQLite's plan for the one statement it executed."""
    engine = connection.engine
    executed: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        executed.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        result = run(connection)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    [(statement, parameters)] = executed
    return result, list(connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all())


def test_the_enquiry_lookup_of_a_batch_seeks_each_pair_among_many_active_enquiries(
    many_active_enquiries: Any,
) -> None:
    # With thousands of active enquiries SQLite's planner walked the status index, every one of them, for
    # every batch; the (agent, citizen, status) index makes it one seek per pair.
    engine = many_active_enquiries
    with engine.connect() as connection:
        held, plan = query_plan(
            connection,
            lambda c: enquiry_repository.holding_enquiry_ids(c, pairs=[("A-0", "C-10"), ("A-1", "C-11")]),
        )
    assert held == {("A-0", "C-10"): "E-10", ("A-1", "C-11"): "E-11"}
    assert any("ix_enquiries_holder" in str(step) for step in plan), plan


def test_an_agents_active_enquiries_are_sought_by_agent(
    many_active_enquiries: Any,
) -> None:
    # The agent's and the status's own indexes were dropped (revision 0005): the holder index leads with
    # the agent, and the planner no longer walks every active enquiry by status.
    engine = many_active_enquiries
    with engine.connect() as connection, Session(bind=connection) as session:
        found, plan = query_plan(
            connection, lambda _c: enquiry_repository.active_enquiries(session, agent_id="A-1")
        )
    assert len(found) == 1_000
    assert {enquiry.agent_id for enquiry in found} == {"A-1"}
    steps = " ".join(str(step) for step in plan)
    assert "ix_enquiries_holder (agent_id=?)" in steps, plan
