"""Publishing while Kafka does not acknowledge: reads go on, and publishing is refused at once until then."""

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from kafka.admin import KafkaAdminClient
from kafka.errors import UnknownTopicOrPartitionError

from api.app import create_app
from api.publisher import EventPublisher, PublishCircuit, PublishUnavailable
from api.routes.events import EXAMPLE_EVENT
from context.settings import RedisSettings
from events.settings import KafkaSettings
from events.topics import ensure_topic
from models.database import DatabaseSettings
from models.events import CloudEvent
from models.security import Scope
from tests import access
from tests.conftest import topic_records, wait_until
from tests.kafka_faults import silent_broker, stalling_broker

# More publishing requests at once than the worker threads every route shares (anyio's default is 40).
CONCURRENT_PUBLISHES = 48
# Generous: a read answers in milliseconds; without threads of its own, it waited the publishes' 10 s.
PROMPT_S = 3.0
# The API's publisher waits this long for Kafka (EventPublisher's default).
PUBLISH_TIMEOUT_S = 10.0


def event(**changes: Any) -> dict[str, Any]:
    return {**EXAMPLE_EVENT, "id": str(uuid.uuid4()), **changes}


@pytest.fixture
def topic_created_later() -> Iterator[str]:
    """The name of a topic that does not exist yet (the broker creates none by itself), deleted afterwards."""
    name = f"test.{uuid.uuid4().hex[:12]}"
    yield name
    admin = KafkaAdminClient(bootstrap_servers=KafkaSettings().bootstrap_list)
    try:
        admin.delete_topics([name])
    except UnknownTopicOrPartitionError:
        pass  # the test ended before creating it
    finally:
        admin.close()


def test_reads_go_on_while_kafka_does_not_acknowledge_and_publishing_is_refused_at_once_until_it_does(
    redis_settings: RedisSettings, database_settings: DatabaseSettings, topic_created_later: str
) -> None:
    # Until its topic exists, the broker cannot take the events: each publish waits its whole timeout (10 s),
    # as it waits in flush() for a broker that went away after the producer was made.
    app = create_app(
        redis_settings=redis_settings,
        database=database_settings,
        kafka=KafkaSettings(topic=topic_created_later),
    )
    with TestClient(app, headers=access.integrator(database_settings, Scope.events_write)) as client:

        def publish() -> Response:
            return client.post("/v1/events", json=event())

        with ThreadPoolExecutor(max_workers=CONCURRENT_PUBLISHES) as pool:
            publishing = [pool.submit(publish) for _ in range(CONCURRENT_PUBLISHES)]
            time.sleep(2)  # every publish is waiting for Kafka by now
            # A key of its own, used for the first time: authenticating it is a SQL query on a worker thread.
            reader = access.integrator(database_settings, Scope.context_read)
            started = time.monotonic()
            read = client.get("/v1/citizens/C-100234/context", headers=reader)
            read_s = time.monotonic() - started
            pending_while_read = sum(not future.done() for future in publishing)
            answers = [future.result() for future in publishing]
        assert read.status_code == 200, read.text
        assert read_s < PROMPT_S
        assert pending_while_read == CONCURRENT_PUBLISHES
        assert {(answer.status_code, answer.headers["retry-after"]) for answer in answers} == {(503, "2")}
        assert answers[0].json()["detail"] == "Kafka did not acknowledge the events; retry them."

        # Kafka failed just now: the next publish is refused at once, not after another 10 s.
        started = time.monotonic()
        refused = publish()
        assert (refused.status_code, refused.headers["retry-after"]) == (503, "2")
        assert time.monotonic() - started < PROMPT_S

        # Kafka can take the events again: after the pause, one publish tries, and publishing resumes.
        ensure_topic(KafkaSettings().bootstrap_list, topic_created_later, partitions=3)
        accepted: list[Response] = []

        def resumed() -> bool:
            answer = publish()
            if answer.status_code == 503:
                return False
            accepted.append(answer)
            return True

        wait_until(resumed, what="publishing to resume once Kafka takes events again", timeout_s=30)
        accepted.append(publish())
    assert [answer.status_code for answer in accepted] == [202, 202]
    assert len(topic_records(topic_created_later)) == 2


def test_the_circuit_refuses_at_once_after_a_failure_then_lets_one_publish_try_again() -> None:
    circuit = PublishCircuit(pause_s=0.2)
    with pytest.raises(PublishUnavailable), circuit.attempt():
        raise PublishUnavailable("Kafka did not answer")
    assert circuit.refuses()
    with pytest.raises(PublishUnavailable), circuit.attempt():
        pytest.fail("a publish ran while the circuit was open")
    time.sleep(0.3)
    assert not circuit.refuses()
    with circuit.attempt():
        assert circuit.refuses()  # one publish tries; the others are refused meanwhile
    assert not circuit.refuses()
    with circuit.attempt():
        assert not circuit.refuses()  # closed: publishes run side by side


def test_a_failed_try_pauses_publishing_again() -> None:
    circuit = PublishCircuit(pause_s=0.2)
    with pytest.raises(PublishUnavailable), circuit.attempt():
        raise PublishUnavailable("Kafka did not answer")
    time.sleep(0.3)
    with pytest.raises(PublishUnavailable), circuit.attempt():
        raise PublishUnavailable("Kafka still did not answer")
    assert circuit.refuses()


@pytest.fixture(params=["silent", "stalling"])
def unanswering_broker(request: pytest.FixtureRequest) -> Iterator[str]:
    """A broker address that takes connections and never answers, or answers only the version handshake."""
    if request.param == "silent":
        with silent_broker() as address:
            yield address
    else:
        with stalling_broker(KafkaSettings().bootstrap_list[0]) as address:
            yield address


def test_a_broker_that_cannot_be_bootstrapped_is_unavailable_within_the_publish_timeout(
    unanswering_broker: str,
) -> None:
    # kafka-python's own timeouts (30 s for each step: the topic's limit, the producer's bootstrap, its
    # first request) held each publish a minute and more.
    publisher = EventPublisher(KafkaSettings(bootstrap_servers=unanswering_broker), timeout_s=1)
    publishes = 4
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=publishes) as pool:
        tried = [
            pool.submit(publisher.publish_all, [CloudEvent.model_validate(event())]) for _ in range(publishes)
        ]
        failures = [future.exception() for future in tried]
    elapsed = time.monotonic() - started
    assert all(isinstance(failure, PublishUnavailable) for failure in failures), failures
    # The publishes queued behind the first bootstrap fail with it, not after one timeout each in turn.
    assert elapsed < 1 + PROMPT_S / 2


def test_publishing_through_a_broker_that_cannot_be_bootstrapped_is_a_503(
    redis_settings: RedisSettings, database_settings: DatabaseSettings
) -> None:
    with silent_broker() as address:
        app = create_app(
            redis_settings=redis_settings,
            database=database_settings,
            kafka=KafkaSettings(bootstrap_servers=address),
        )
        with TestClient(app, headers=access.integrator(database_settings, Scope.events_write)) as client:
            started = time.monotonic()
            response = client.post("/v1/events", json=event())
            elapsed = time.monotonic() - started
    assert (response.status_code, response.headers["retry-after"]) == (503, "2")
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "Kafka did not acknowledge the events; retry them."
    assert elapsed < PUBLISH_TIMEOUT_S + PROMPT_S
