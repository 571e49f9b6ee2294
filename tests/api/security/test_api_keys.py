"""Integrators' API keys on both databases: shown once, stored hashed, scoped, expiring, rotated."""

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from api.app import create_app
from api.security import api_keys
from api.security.api_keys import InvalidKey, KeyProblem
from api.security.settings import SecuritySettings
from context.settings import RedisSettings, TimelineSettings
from context.store import ProjectionWriter
from models import api_key_repository, audit_repository
from models.audit_repository import AuditFilter
from models.database import DatabaseSettings, create_db_engine, migrate
from models.security import Scope
from models.tables import ApiKey, AuditAction
from tests import access
from tests.factories import close_code, make_event, writes_for

DAY = timedelta(days=1)


@pytest.fixture
def engine(sql_database: DatabaseSettings) -> Iterator[Engine]:
    migrate(sql_database)
    db = create_db_engine(sql_database)
    yield db
    db.dispose()


def test_a_key_is_shown_once_and_stored_only_as_a_hash(engine: Engine) -> None:
    issued = api_keys.create_key(
        engine, by=access.OPERATOR, client="crm", scopes=[Scope.context_read], ttl=timedelta(days=1)
    )
    secret = issued.key.split("_", 2)[2]
    with Session(engine) as session:
        stored = session.get(ApiKey, issued.record.id)
    assert stored is not None
    assert secret not in (stored.secret_hash, stored.id, stored.scopes)
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    caller = api_keys.authenticate_key(engine, issued.key)
    assert (caller.kind, caller.client, caller.scopes) == (
        "integrator",
        "crm",
        frozenset({Scope.context_read}),
    )


def test_use_is_noted_but_not_on_every_request(engine: Engine) -> None:
    issued = api_keys.create_key(
        engine, by=access.OPERATOR, client="crm", scopes=[Scope.context_read], ttl=timedelta(days=1)
    )
    api_keys.authenticate_key(engine, issued.key)
    first = api_keys.list_keys(engine, client="crm")[0].last_used_at
    api_keys.authenticate_key(engine, issued.key)
    assert first is not None
    assert api_keys.list_keys(engine, client="crm")[0].last_used_at == first


@pytest.mark.parametrize(
    "presented",
    ["", "cck_", "cck_abc", "nonsense", "cck_0000000000000000_secret", "Bearer cck_x_y"],
)
def test_malformed_or_unknown_keys_prove_nothing(engine: Engine, presented: str) -> None:
    with pytest.raises(InvalidKey):
        api_keys.authenticate_key(engine, presented)


def test_a_wrong_secret_for_a_real_id_proves_nothing(engine: Engine) -> None:
    issued = api_keys.create_key(
        engine, by=access.OPERATOR, client="crm", scopes=[Scope.context_read], ttl=timedelta(days=1)
    )
    with pytest.raises(InvalidKey, match="not valid"):
        api_keys.authenticate_key(engine, f"cck_{issued.record.id}_{'x' * 43}")


def test_expired_and_revoked_keys_are_refused(engine: Engine) -> None:
    expired = api_keys.create_key(
        engine, by=access.OPERATOR, client="a", scopes=[Scope.audit_read], ttl=timedelta(seconds=-1)
    )
    with pytest.raises(InvalidKey, match="expired"):
        api_keys.authenticate_key(engine, expired.key)
    revoked = api_keys.create_key(
        engine, by=access.OPERATOR, client="b", scopes=[Scope.audit_read], ttl=timedelta(days=1)
    )
    api_keys.revoke_key(engine, by=access.OPERATOR, key_id=revoked.record.id)
    with pytest.raises(InvalidKey, match="revoked"):
        api_keys.authenticate_key(engine, revoked.key)
    with pytest.raises(KeyProblem) as again:
        api_keys.revoke_key(engine, by=access.OPERATOR, key_id=revoked.record.id)
    assert again.value.status == 404


def test_a_client_holds_at_most_two_keys_and_rotation_keeps_scopes(engine: Engine) -> None:
    first = api_keys.create_key(
        engine,
        by=access.OPERATOR,
        client="crm",
        scopes=[Scope.events_write, Scope.context_read],
        ttl=timedelta(days=30),
    )
    second = api_keys.rotate_key(engine, by=access.OPERATOR, key_id=first.record.id, grace=timedelta(hours=1))
    assert api_keys.scopes_of(second.record) == {Scope.events_write, Scope.context_read}
    assert second.record.expires_at - second.record.created_at == timedelta(days=30)
    with pytest.raises(KeyProblem) as third:
        api_keys.create_key(
            engine, by=access.OPERATOR, client="crm", scopes=[Scope.context_read], ttl=timedelta(days=1)
        )
    assert third.value.status == 409
    with pytest.raises(KeyProblem):
        api_keys.rotate_key(engine, by=access.OPERATOR, key_id=second.record.id, grace=timedelta(hours=1))
    # Both work during the grace period; the old one expires at its end.
    assert (
        api_keys.authenticate_key(engine, first.key).client
        == api_keys.authenticate_key(engine, second.key).client
    )
    api_keys.revoke_key(engine, by=access.OPERATOR, key_id=first.record.id)
    third_key = api_keys.rotate_key(engine, by=access.OPERATOR, key_id=second.record.id, grace=timedelta(0))
    with pytest.raises(InvalidKey, match="expired"):
        api_keys.authenticate_key(engine, second.key)
    assert api_keys.authenticate_key(engine, third_key.key).client == "crm"


def test_a_key_rotated_under_load_fails_no_request_and_revocation_closes_its_stream(
    redis_settings: RedisSettings, database_settings: DatabaseSettings, redis_client: "redis.Redis"
) -> None:
    ProjectionWriter(redis_client, prefix=redis_settings.key_prefix, timeline=TimelineSettings()).apply_batch(
        writes_for(make_event("C-KEYS", minutes_ago=1))
    )
    admin = access.admin()
    security = SecuritySettings(access_check_s=0.5)
    app = create_app(redis_settings=redis_settings, database=database_settings, security=security)
    statuses: list[int] = []
    stop = threading.Event()
    with TestClient(app) as client:
        created = client.post(
            "/v1/admin/api-keys", json={"client": "crm", "scopes": ["context:read"]}, headers=admin
        )
        assert created.status_code == 201
        current = {"key": created.json()["key"]}

        def keep_reading() -> None:
            while not stop.is_set():
                response = client.get("/v1/citizens/C-KEYS/context", headers={"X-API-Key": current["key"]})
                statuses.append(response.status_code)

        with client.websocket_connect(
            "/v1/citizens/C-KEYS/stream", headers={"X-API-Key": current["key"]}
        ) as old:
            assert old.receive_json()["type"] == "snapshot"
            reader = threading.Thread(target=keep_reading)
            reader.start()
            try:
                time.sleep(0.3)
                rotated = client.post(
                    f"/v1/admin/api-keys/{created.json()['id']}/rotate", json={"grace_s": 3600}, headers=admin
                )
                assert rotated.status_code == 201
                current["key"] = rotated.json()["key"]  # the client switches to its new key
                time.sleep(0.3)
                revoked = client.delete(f"/v1/admin/api-keys/{created.json()['id']}", headers=admin)
                assert revoked.status_code == 204
                time.sleep(0.3)
            finally:
                stop.set()
                reader.join()
            # The stream opened with the revoked key closes at its next access check.
            assert close_code(old) == 4403
        assert (
            client.get(
                "/v1/citizens/C-KEYS/context", headers={"X-API-Key": created.json()["key"]}
            ).status_code
            == 401
        )
    assert len(statuses) > 10
    assert set(statuses) == {200}


def test_rotations_and_creations_at_once_never_give_a_client_more_than_two_keys(engine: Engine) -> None:
    # Each found room for one more key before the others wrote theirs: two rotations at once left three.
    first = api_keys.create_key(
        engine, by=access.OPERATOR, client="race", scopes=[Scope.context_read], ttl=timedelta(days=1)
    )
    start = threading.Barrier(6)

    def rotate() -> object:
        start.wait()
        return api_keys.rotate_key(
            engine, by=access.OPERATOR, key_id=first.record.id, grace=timedelta(hours=1)
        )

    def create() -> object:
        start.wait()
        return api_keys.create_key(
            engine, by=access.OPERATOR, client="race", scopes=[Scope.context_read], ttl=timedelta(days=1)
        )

    outcomes: list[object] = []

    def attempt(step: Callable[[], object]) -> None:
        try:
            outcomes.append(step())
        except KeyProblem as problem:
            outcomes.append(problem.status)

    threads = [threading.Thread(target=attempt, args=(step,)) for step in (rotate, create) * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    issued = [outcome for outcome in outcomes if isinstance(outcome, api_keys.IssuedKey)]
    assert len(outcomes) == 6
    assert len(issued) == 1
    assert sorted(outcome for outcome in outcomes if isinstance(outcome, int)) == [409] * 5
    with Session(engine) as session:
        usable = api_key_repository.usable_keys(session, client="race", now=datetime.now(UTC))
    assert len(usable) == 2


@pytest.mark.parametrize("sql_database", ["postgresql"], indirect=True)
def test_a_key_revoked_while_it_is_rotated_gets_no_successor(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL lets the revocation through while the rotation holds the client (SQLite makes it wait):
    # the rotation must then find the key revoked, and issue nothing.
    leaked = api_keys.create_key(
        engine, by=access.OPERATOR, client="leak", scopes=[Scope.context_read], ttl=timedelta(days=1)
    )
    counted = api_key_repository.usable_keys

    def revoked_meanwhile(session: Session, *, client: str, now: datetime) -> list[ApiKey]:
        api_keys.revoke_key(
            engine, by=access.OPERATOR, key_id=leaked.record.id
        )  # another admin, on another connection
        return counted(session, client=client, now=now)

    monkeypatch.setattr(api_key_repository, "usable_keys", revoked_meanwhile)
    with pytest.raises(KeyProblem) as refused:
        api_keys.rotate_key(engine, by=access.OPERATOR, key_id=leaked.record.id, grace=timedelta(hours=1))
    assert refused.value.status == 404
    with Session(engine) as session:
        keys = api_key_repository.list_keys(session, client="leak")
    assert [(key.id, key.revoked_at is not None) for key in keys] == [(leaked.record.id, True)]


def test_every_change_of_a_key_is_in_the_audit_trail_with_its_admin(
    redis_settings: RedisSettings, sql_database: DatabaseSettings
) -> None:
    migrate(sql_database)
    app = create_app(redis_settings=redis_settings, database=sql_database)
    admin = access.admin("AD-keys")
    with TestClient(app) as client:
        created = client.post(
            "/v1/admin/api-keys", json={"client": "crm", "scopes": ["context:read"]}, headers=admin
        ).json()
        rotated = client.post(f"/v1/admin/api-keys/{created['id']}/rotate", json={}, headers=admin).json()
        assert client.delete(f"/v1/admin/api-keys/{rotated['id']}", headers=admin).status_code == 204
        # A change that does not happen leaves no record: nothing changed.
        assert client.delete(f"/v1/admin/api-keys/{rotated['id']}", headers=admin).status_code == 404
        # A caller who may not change keys is refused, and the refusal is recorded.
        refused = client.delete(f"/v1/admin/api-keys/{created['id']}", headers=access.supervisor("S-keys"))
        assert refused.status_code == 403
        records = client.get("/v1/audit", params={"after": 0}, headers=admin).json()["records"]
    changes = [
        (
            r["actor_id"],
            r["actor_role"],
            r["action"],
            r["outcome"],
            r["api_key_id"],
            r["reason"],
            r["citizen"],
        )
        for r in records
        if r["action"].startswith("api_key.")
    ]
    expires = rotated_expiry(records)
    assert changes == [
        (
            "AD-keys",
            "admin",
            "api_key.created",
            "allowed",
            created["id"],
            "client crm; scopes context:read",
            None,
        ),
        (
            "AD-keys",
            "admin",
            "api_key.rotated",
            "allowed",
            created["id"],
            f"successor {rotated['id']}; {expires}",
            None,
        ),
        ("AD-keys", "admin", "api_key.revoked", "allowed", rotated["id"], None, None),
        (
            "S-keys",
            "supervisor",
            "api_key.revoked",
            "denied",
            created["id"],
            None,
            None,
        ),
    ]
    assert {r["client_address"] for r in records if r["action"].startswith("api_key.")} == {"testclient"}


def rotated_expiry(records: list[dict[str, object]]) -> str:
    """The old key's expiry, as its rotation's record says it (the moment the API chose)."""
    [reason] = [r["reason"] for r in records if r["action"] == "api_key.rotated"]
    assert isinstance(reason, str)
    expiry = reason.split("; ", 1)[1]
    assert expiry.startswith("this key expires at ")
    return expiry


def test_a_key_change_and_its_record_are_committed_together(engine: Engine) -> None:
    # The record is written in the change's transaction: a change refused on its way leaves neither.
    first = api_keys.create_key(
        engine, by=access.OPERATOR, client="pair", scopes=[Scope.context_read], ttl=DAY
    )
    api_keys.create_key(engine, by=access.OPERATOR, client="pair", scopes=[Scope.context_read], ttl=DAY)
    with pytest.raises(KeyProblem):
        api_keys.create_key(engine, by=access.OPERATOR, client="pair", scopes=[Scope.context_read], ttl=DAY)
    with pytest.raises(KeyProblem):
        api_keys.rotate_key(engine, by=access.OPERATOR, key_id=first.record.id, grace=DAY)
    with Session(engine) as session:
        trail = audit_repository.read_records(session, where=AuditFilter(), limit=100)
    assert [(r.actor_kind, r.actor_id, r.action, r.api_key_id) for r in trail] == [
        ("operator", "test-operator", AuditAction.key_created, first.record.id),
        ("operator", "test-operator", AuditAction.key_created, trail[1].api_key_id),
    ]
    assert trail[1].api_key_id not in (None, first.record.id)
