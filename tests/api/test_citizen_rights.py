"""A citizen's rights through real processes: a complete export, and an erasure that survives a rebuild."""

from collections.abc import Iterator
from typing import cast

import httpx
import pytest
import redis
import websockets.sync.client as ws_client
from sqlalchemy import text
from websockets.exceptions import ConnectionClosed

from api.publisher import EventPublisher
from context.keys import erasure_mark_key
from context.settings import RedisSettings, redis_client_options
from events.settings import KafkaSettings
from models.database import DatabaseSettings, create_db_engine
from tests import access
from tests.conftest import Stack, wait_until
from tests.factories import example_data, make_event

PHONE, EMAIL = "+447700900777", "erase.me@example.org"


@pytest.fixture
def publisher(stack: Stack) -> Iterator[EventPublisher]:
    kafka = EventPublisher(KafkaSettings(topic=stack.env["CITIZEN_CONTEXT_KAFKA_TOPIC"]))
    yield kafka
    kafka.close()


def held_in_redis(stack: Stack, *needles: str) -> list[str]:
    """Every key of the stack's prefix whose name or value mentions one of `needles`, but for erasure marks
    (a citizen's id and when they were erased: what keeps their earlier events from coming back)."""
    prefix = stack.env["CITIZEN_CONTEXT_REDIS_KEY_PREFIX"]
    client = redis.Redis.from_url(str(RedisSettings().url), **redis_client_options())
    found = []
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            if key.startswith(f"{prefix}:erased:"):
                continue
            if any(needle in f"{key} {_values(client, key)}" for needle in needles):
                found.append(key)
    finally:
        client.close()
    return found


def _values(client: "redis.Redis", key: str) -> object:
    kind = client.type(key)
    if kind == "hash":
        return client.hgetall(key)
    if kind == "set":
        return client.smembers(key)
    if kind == "zset":
        return client.zrange(key, 0, -1)
    if kind == "list":
        return client.lrange(key, 0, -1)
    return client.get(key)


def held_in_sql(stack: Stack, *needles: str) -> list[str]:
    """Every row of every table that mentions one of `needles`."""
    engine = create_db_engine(DatabaseSettings(url=stack.env["CITIZEN_CONTEXT_DATABASE_URL"]))
    found = []
    try:
        with engine.connect() as connection:
            for table in ("agents", "enquiries", "api_keys", "audit_records"):
                for row in connection.execute(text(f"SELECT * FROM {table}")):  # noqa: S608 (fixed names)
                    if any(needle in str(tuple(row)) for needle in needles):
                        found.append(f"{table}: {tuple(row)}")
    finally:
        engine.dispose()
    return found


def test_export_then_erasure_then_rebuild_leaves_nothing_of_the_citizen(
    stack: Stack, publisher: EventPublisher
) -> None:
    stack.consumer()
    stack.api()
    api = stack.api_url
    citizen, neighbour = "C-ERASE-1", "C-KEEP-1"
    profile = make_event(
        citizen, type_="profile.updated", data=example_data("profile.updated", phone=PHONE, email=EMAIL)
    )
    history = [
        profile,
        make_event(citizen, minutes_ago=30),
        make_event(citizen, type_="case.opened", minutes_ago=20),
    ]
    kept = make_event(neighbour, minutes_ago=10)
    publisher.publish_all([*history, kept])
    supervisor = access.supervisor()

    def version(who: str) -> int:
        response = httpx.get(f"{api}/v1/citizens/{who}/context", headers=supervisor, timeout=5)
        return int(response.json()["version"]) if response.status_code == 200 else -1

    wait_until(lambda: version(citizen) >= 3 and version(neighbour) >= 1, what="events applied")

    agent = access.agent("agent-rights")
    enquiry = httpx.post(
        f"{api}/v1/enquiries", json={"phone": PHONE, "channel": "phone"}, headers=agent, timeout=5
    )
    assert enquiry.status_code == 201, enquiry.text
    assert httpx.get(f"{api}/v1/citizens/{citizen}/context", headers=agent, timeout=5).status_code == 200
    completion = httpx.post(
        f"{api}/v1/enquiries/{enquiry.json()['id']}/complete",
        json={"outcome": "resolved", "notes": "Explained the payment plan."},
        headers=agent,
        timeout=10,
    )
    assert completion.status_code == 200
    wait_until(lambda: version(citizen) >= 4, what="the completion applied")

    admin = access.admin()
    exported = httpx.get(f"{api}/v1/citizens/{citizen}/export", headers=admin, timeout=10)
    assert exported.status_code == 200
    copy = exported.json()
    completed_id = f"enquiry-{enquiry.json()['id']}-completed"
    # Everything held, and only that: this citizen's events, identifiers, enquiry and viewers.
    assert {event["id"] for event in copy["timeline"]} == {event.id for event in history} | {completed_id}
    assert copy["identifiers"] == ["case:HB-4471", f"email:{EMAIL}", f"phone:{PHONE}"]
    assert copy["profile"]["preferred_language"] == "cy"
    assert [e["notes"] for e in copy["enquiries"]] == ["Explained the payment plan."]
    views = [(view["actor_id"], view["action"]) for view in copy["views"]]
    assert ("agent-rights", "context.read") in views
    assert ("S-test", "context.read") in views
    assert views[-1] == ("AD-test", "export")  # the export itself is recorded, and included
    assert neighbour not in exported.text
    assert kept.id not in exported.text

    erased = httpx.delete(f"{api}/v1/citizens/{citizen}", headers=admin, timeout=10)
    assert erased.status_code == 200, erased.text
    receipt = erased.json()
    assert receipt["enquiries_removed"] == 1
    # Not `keys_removed`: the consumer applies the erasure record too, and may remove the keys first. What
    # counts is that nothing is held afterwards, whoever removed it.
    assert citizen not in erased.text
    needles = (citizen, PHONE, EMAIL, "Explained the payment plan")
    assert held_in_redis(stack, *needles) == []
    assert held_in_sql(stack, *needles) == []
    # What is left is the mark: when the citizen was erased, until no earlier record can come back.
    mark = erasure_mark_key(stack.env["CITIZEN_CONTEXT_REDIS_KEY_PREFIX"], citizen)
    marks = redis.Redis.from_url(str(RedisSettings().url), **redis_client_options())
    try:
        assert int(cast(str, marks.get(mark))) > 0
        assert marks.ttl(mark) > 0
    finally:
        marks.close()
    lookup = httpx.get(f"{api}/v1/citizens/lookup", params={"phone": PHONE}, headers=supervisor, timeout=5)
    assert lookup.status_code == 404

    # The consumer applies the erasure record too; then the projection is rebuilt from the whole topic,
    # which still holds the citizen's events before their erasure.
    wait_until(
        lambda: held_in_redis(stack, *needles) == [] and version(neighbour) >= 1, what="erasure consumed"
    )
    stack.cli("rebuild", "--grace", "0")
    assert version(neighbour) >= 1
    assert held_in_redis(stack, *needles) == []
    assert held_in_sql(stack, *needles) == []
    # The trail keeps its records, under a pseudonym: the erasure itself among them.
    trail = httpx.get(f"{api}/v1/audit", params={"citizen_id": citizen}, headers=admin, timeout=5).json()
    assert [record["action"] for record in trail["records"]][-1] == "erasure"
    assert {record["citizen"] for record in trail["records"]} == {receipt["citizen"]}
    # And no log of any process named the citizen.
    for process in stack.processes:
        assert citizen not in process.log()
        assert PHONE not in process.log()


def test_an_erasure_closes_the_citizens_open_streams(stack: Stack, publisher: EventPublisher) -> None:
    stack.consumer()
    stack.api()
    publisher.publish_all([make_event("C-ERASE-2")])
    url = stack.api_url.replace("http", "ws", 1) + "/v1/citizens/C-ERASE-2/stream"
    with ws_client.connect(url, additional_headers=access.supervisor(), open_timeout=5) as websocket:
        assert "snapshot" in str(websocket.recv(timeout=5))
        assert (
            httpx.delete(
                f"{stack.api_url}/v1/citizens/C-ERASE-2", headers=access.admin(), timeout=10
            ).status_code
            == 200
        )
        assert close_code(websocket) == 4411


def close_code(websocket: "ws_client.ClientConnection") -> int:
    """Read until the server closes the connection; its close code."""
    try:
        while True:
            websocket.recv(timeout=10)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else -1
