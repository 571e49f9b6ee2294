"""POST /v1/events: the same contract as the topic, all or nothing, acknowledged by Kafka."""

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from api.app import create_app
from api.publisher import PAUSE_AFTER_FAILURE_S
from api.routes.events import EXAMPLE_EVENT
from context.settings import RedisSettings
from events.codec import MAX_EVENT_BYTES, NON_FINITE
from events.settings import KafkaSettings
from events.topics import ensure_topic
from models.database import DatabaseSettings
from models.security import Scope
from tests import access
from tests.conftest import topic_records
from tests.factories import example_data


@pytest.fixture
def client(
    redis_settings: RedisSettings, database_settings: DatabaseSettings, kafka_topic: str
) -> Iterator[TestClient]:
    app = create_app(
        redis_settings=redis_settings, database=database_settings, kafka=KafkaSettings(topic=kafka_topic)
    )
    with TestClient(app, headers=access.integrator(database_settings, Scope.events_write)) as test_client:
        yield test_client


def event(**changes: Any) -> dict[str, Any]:
    return {**EXAMPLE_EVENT, "id": str(uuid.uuid4()), **changes}


def test_one_structured_event_is_published_keyed_by_citizen(client: TestClient, kafka_topic: str) -> None:
    sent = event()
    response = client.post(
        "/v1/events", content=json.dumps(sent), headers={"content-type": "application/cloudevents+json"}
    )
    assert response.status_code == 202
    assert response.json() == {"accepted": [{"id": sent["id"], "source": sent["source"]}]}
    [record] = topic_records(kafka_topic)
    assert record.key == b"C-100234"
    assert json.loads(record.value)["id"] == sent["id"]
    assert ("content-type", b"application/cloudevents+json") in record.headers


def test_a_batch_is_published_in_order(client: TestClient, kafka_topic: str) -> None:
    batch = [event(subject=f"C-{n}") for n in range(5)]
    response = client.post(
        "/v1/events",
        content=json.dumps(batch),
        headers={"content-type": "application/cloudevents-batch+json"},
    )
    assert response.status_code == 202
    assert [a["id"] for a in response.json()["accepted"]] == [e["id"] for e in batch]
    assert sorted(json.loads(r.value)["id"] for r in topic_records(kafka_topic)) == sorted(
        e["id"] for e in batch
    )


def test_an_event_naming_a_citizen_taught_earlier_in_the_batch_follows_that_event(
    client: TestClient, kafka_topic: str
) -> None:
    # The call names the citizen only by the number the profile update teaches (written otherwise): on the
    # same partition, after it, the consumer resolves it from the profile rather than dead-lettering it.
    profile = event(subject="C-300", type="profile.updated", data=example_data("profile.updated"))
    call = {key: value for key, value in event(citizenphone="+44 7700 900123").items() if key != "subject"}
    response = client.post(
        "/v1/events",
        content=json.dumps([profile, call]),
        headers={"content-type": "application/cloudevents-batch+json"},
    )
    assert response.status_code == 202
    records = {json.loads(r.value)["id"]: r for r in topic_records(kafka_topic)}
    first, second = records[profile["id"]], records[call["id"]]
    assert first.key == second.key == b"C-300"
    assert first.partition == second.partition
    assert first.offset < second.offset


def test_one_bad_event_rejects_the_whole_batch_and_says_which(client: TestClient, kafka_topic: str) -> None:
    batch = [event(), event(time="yesterday"), event(type="call.ended", data={"channel": "phone"}), "oops"]
    response = client.post("/v1/events", json=batch)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert [(e["location"], e["reason"]) for e in errors] == [
        ("body[1]", "invalid"),
        ("body[2]", "invalid-data"),
        ("body[3]", "not-an-object"),
    ]
    assert topic_records(kafka_topic) == []


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 422),
        (b"[]", "application/json", 422),
        (b'{"a": 1}', "text/plain", 415),
        (json.dumps(EXAMPLE_EVENT).encode(), "application/cloudevents-batch+json", 422),
        (b"[" + b",".join([json.dumps(EXAMPLE_EVENT).encode()] * 501) + b"]", "application/json", 413),
        (b'"' + b"x" * 1_100_000 + b'"', "application/json", 413),
    ],
)
def test_bad_requests_are_problems(
    client: TestClient, content: bytes, content_type: str, status: int
) -> None:
    response = client.post("/v1/events", content=content, headers={"content-type": content_type})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"


def test_an_unreachable_kafka_is_a_503_not_a_hang(
    redis_settings: RedisSettings, database_settings: DatabaseSettings
) -> None:
    unreachable = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    with TestClient(
        create_app(redis_settings=redis_settings, database=database_settings, kafka=unreachable),
        headers=access.integrator(database_settings, Scope.events_write),
    ) as c:
        response = c.post("/v1/events", json=event())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"


def test_an_event_larger_than_any_kept_once_encoded_is_named_and_none_of_the_batch_is_published(
    client: TestClient, kafka_topic: str
) -> None:
    # `1e15` takes 4 bytes of the body and 18 once encoded (1000000000000000.0): a body far under the body
    # limit can hold an event larger than any the projection keeps (events.codec.MAX_EVENT_BYTES).
    large = event(data={**EXAMPLE_EVENT["data"], "figures": [1e15] * 60_000})
    body = json.dumps([event(), large]).replace("1000000000000000.0", "1e15")
    assert len(body) < 400_000
    response = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "Some events break the contract; none was published."
    [error] = response.json()["errors"]
    assert (error["location"], error["reason"]) == ("body[1]", "too-large")
    assert error["message"] == f"the event's JSON form is larger than {MAX_EVENT_BYTES} bytes"
    assert topic_records(kafka_topic) == []


def test_nan_and_infinity_are_refused_not_stored_as_null(client: TestClient, kafka_topic: str) -> None:
    body = json.dumps([event(), event(data={**EXAMPLE_EVENT["data"], "balance": float("nan")})])
    assert "NaN" in body
    response = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert (error["location"], error["reason"], error["message"]) == ("body[1]", "not-json", NON_FINITE)
    assert topic_records(kafka_topic) == []


def test_a_body_that_is_not_json_is_told_where_without_being_quoted(client: TestClient) -> None:
    said = {
        b'{"id": oops}': "The body is not JSON: Expecting value at character 7.",
        b"[" * 50_000: "The body nests too deeply to be read.",
    }
    for content, detail in said.items():
        response = client.post("/v1/events", content=content, headers={"content-type": "application/json"})
        assert (response.status_code, response.json()["detail"]) == (422, detail)


@pytest.fixture
def small_records_topic() -> Iterator[str]:
    """A topic whose broker takes records of at most 10 kB (an operator's lower limit), deleted afterwards."""
    name = f"test.{uuid.uuid4().hex[:12]}"
    servers = KafkaSettings().bootstrap_list
    ensure_topic(servers, name, partitions=1, configs={"max.message.bytes": "10000"})
    yield name
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        admin.delete_topics([name])
    finally:
        admin.close()


def test_an_event_the_broker_refuses_as_too_large_is_named_not_a_503(
    redis_settings: RedisSettings, database_settings: DatabaseSettings, small_records_topic: str
) -> None:
    """Sending it again would never help: the caller is told which event, not to retry."""
    app = create_app(
        redis_settings=redis_settings,
        database=database_settings,
        kafka=KafkaSettings(topic=small_records_topic),
    )
    with TestClient(app, headers=access.integrator(database_settings, Scope.events_write)) as c:
        response = c.post(
            "/v1/events", json=event(data={**EXAMPLE_EVENT["data"], "transcript": "x" * 20_000})
        )
        # Kafka answered: publishing goes on at once, without the pause that follows an outage.
        after = c.post("/v1/events", json=event())
    assert response.status_code == 422, response.text
    assert "retry-after" not in response.headers
    [error] = response.json()["errors"]
    assert (error["location"], error["reason"]) == ("body[0]", "too-large")
    assert after.status_code == 202, after.text


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "citizen.erased", "data": {"channel": "system", "summary": "Erased."}},
        {
            "source": "/citizen-context/enquiries",
            "type": "enquiry.completed",
            "data": example_data("enquiry.completed"),
        },
        # Whatever else is wrong with it: no correction would make it publishable.
        {"source": "/citizen-context/api", "type": "call.ended", "data": {"channel": 7}},
        {"type": "citizen.erased", "time": "yesterday"},
        # The reserved namespace however it is spelt.
        {"source": "/citizen-context"},
        {"source": "/Citizen-Context/api"},
        {"source": "//citizen-context/enquiries"},
    ],
)
def test_what_only_citizen_context_publishes_is_refused(client: TestClient, changes: dict[str, Any]) -> None:
    response = client.post("/v1/events", json=event(**changes))
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["reason"] == "reserved"
    assert error["message"].endswith("reserved to Citizen Context")


def test_a_batch_sent_as_a_single_event_is_refused(client: TestClient, kafka_topic: str) -> None:
    response = client.post(
        "/v1/events",
        content=json.dumps([event(), event()]),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert response.status_code == 422
    assert "application/cloudevents-batch+json" in response.json()["detail"]
    assert topic_records(kafka_topic) == []


def test_a_limit_lowered_while_the_api_runs_is_a_503_then_read_again(
    redis_settings: RedisSettings, database_settings: DatabaseSettings, small_records_topic: str
) -> None:
    """The producer judges sizes by the topic's limit as read when it was made. Lowered since, the broker
    refuses a record the producer let through, which kafka-python's producer takes for fatal (every pending
    send fails, other callers' too): every caller is told to retry, and the next producer reads the limit."""
    servers = KafkaSettings().bootstrap_list
    admin = KafkaAdminClient(bootstrap_servers=servers)
    app = create_app(
        redis_settings=redis_settings,
        database=database_settings,
        kafka=KafkaSettings(topic=small_records_topic),
    )
    large = event(data={**EXAMPLE_EVENT["data"], "transcript": "x" * 7_000})
    try:
        with TestClient(app, headers=access.integrator(database_settings, Scope.events_write)) as c:
            assert c.post("/v1/events", json=event()).status_code == 202  # the producer reads 10,000 bytes
            resource = ConfigResource(
                ConfigResourceType.TOPIC, small_records_topic, {"max.message.bytes": "4000"}
            )
            admin.alter_configs([resource])
            refused = c.post("/v1/events", json=large)
            time.sleep(PAUSE_AFTER_FAILURE_S)  # the pause after a failure to acknowledge
            judged = c.post("/v1/events", json=large)
            after = c.post("/v1/events", json=event())
    finally:
        admin.close()
    assert refused.status_code == 503, refused.text
    assert "retry-after" in refused.headers
    # The next producer read the lowered limit: the large event is named, the small one taken.
    assert judged.status_code == 422, judged.text
    assert [error["reason"] for error in judged.json()["errors"]] == ["too-large"]
    assert after.status_code == 202, after.text
