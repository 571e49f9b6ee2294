"""Request bodies: a member no field of the request takes is refused, never ignored."""

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from context.settings import RedisSettings
from events.settings import KafkaSettings
from models.database import DatabaseSettings
from tests import access
from tests.api.test_enquiries import assert_problem


@pytest.fixture
def client(
    redis_settings: RedisSettings, migrated: DatabaseSettings, kafka_topic: str
) -> Iterator[TestClient]:
    app = create_app(redis_settings=redis_settings, database=migrated, kafka=KafkaSettings(topic=kafka_topic))
    with TestClient(app) as test_client:
        yield test_client


def refused_member(response: Any, member: str) -> None:
    """The response is a 422 problem naming `member` as no field of the request."""
    problem = assert_problem(response, 422)
    assert {"location": f"body.{member}", "message": "No such field in this request (misspelt?)"} in problem[
        "errors"
    ]


def test_a_misspelt_rotation_grace_is_refused_and_the_key_is_not_rotated(client: TestClient) -> None:
    # `grace` for `grace_s`: taken with the default day's grace, the old key stopped working tomorrow.
    admin = access.admin()
    created = client.post(
        "/v1/admin/api-keys", json={"client": "crm", "scopes": ["context:read"]}, headers=admin
    )
    assert created.status_code == 201, created.text

    response = client.post(
        f"/v1/admin/api-keys/{created.json()['id']}/rotate", json={"grace": 60}, headers=admin
    )

    refused_member(response, "grace")
    keys = client.get("/v1/admin/api-keys", headers=admin).json()["keys"]
    assert [key["id"] for key in keys if key["client"] == "crm"] == [created.json()["id"]]


@pytest.mark.parametrize(
    ("path", "body", "who"),
    [
        ("/v1/admin/api-keys", {"client": "crm", "scopes": ["context:read"], "expires_in": 30}, "admin"),
        ("/v1/stream-tickets", {"reasn": "complaint review"}, "supervisor"),
        ("/v1/enquiries", {"citizen_id": "C-1", "channel": "phone", "note": "x"}, "agent"),
        ("/v1/citizens/lookup", {"phone": "07700 900123", "region": "GB"}, "agent"),
    ],
)
def test_a_member_no_field_takes_is_a_422_problem_naming_it(
    client: TestClient, path: str, body: dict[str, Any], who: str
) -> None:
    headers = {"admin": access.admin, "supervisor": access.supervisor, "agent": access.agent}[who]()
    member = next(name for name in body if name not in {"client", "scopes", "citizen_id", "channel", "phone"})

    refused_member(client.post(path, json=body, headers=headers), member)


def test_a_completion_with_a_member_no_field_takes_leaves_the_enquiry_active(client: TestClient) -> None:
    agent = access.agent("agent-a")
    started = client.post("/v1/enquiries", json={"citizen_id": "C-2", "channel": "phone"}, headers=agent)
    assert started.status_code == 201, started.text
    enquiry = started.json()["id"]

    response = client.post(
        f"/v1/enquiries/{enquiry}/complete", json={"outcome": "resolved", "note": "typo"}, headers=agent
    )

    refused_member(response, "note")
    assert client.get(f"/v1/enquiries/{enquiry}", headers=agent).json()["status"] == "active"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"outcome": "resolved", "notes": "caf\xe9"}', "The body is not UTF-8."),
        (b"[" * 20_000 + b"]" * 20_000, "The body nests too deeply to be read."),
        (
            b'{"outcome": "resolved", "notes": ' + b"1" * 5000 + b"}",
            f"The body holds a number of more than {sys.get_int_max_str_digits()} digits.",
        ),
    ],
)
def test_a_body_that_cannot_be_read_as_json_at_all_is_a_400_saying_why(
    client: TestClient, body: bytes, detail: str
) -> None:
    # Both said "There was an error parsing the body" (the framework's words), naming neither case.
    agent = access.agent("agent-a")
    started = client.post("/v1/enquiries", json={"citizen_id": "C-3", "channel": "phone"}, headers=agent)
    assert started.status_code == 201, started.text

    response = client.post(
        f"/v1/enquiries/{started.json()['id']}/complete",
        content=body,
        headers={**agent, "Content-Type": "application/json"},
    )

    assert assert_problem(response, 400)["detail"] == detail
