"""The audit trail's time filters (a time whose UTC equivalent no date can hold is a 422 naming it), and its
JSON Lines export (a 503 when the database fails before it starts; every record once, page after page)."""

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routes import audit as audit_routes
from context.settings import RedisSettings
from models.database import DatabaseSettings
from tests import access
from tests.database_faults import DatabaseOutage

# The first and the last second a date holds, offset so that in UTC (as the trail stores times, and
# compares them) they fall a year before the first or after the last.
BEFORE_THE_FIRST_YEAR = "0001-01-01T00:00:00+01:00"
AFTER_THE_LAST_YEAR = "9999-12-31T23:59:59-01:00"


@pytest.fixture
def client(redis_settings: RedisSettings, database_settings: DatabaseSettings) -> Iterator[TestClient]:
    app = create_app(redis_settings=redis_settings, database=database_settings)
    with TestClient(app, headers=access.admin()) as test_client:
        yield test_client


@pytest.mark.parametrize("format", ["json", "jsonl"])
@pytest.mark.parametrize(
    ("parameter", "moment"), [("since", BEFORE_THE_FIRST_YEAR), ("until", AFTER_THE_LAST_YEAR)]
)
def test_a_time_beyond_the_years_a_date_holds_in_utc_is_refused_by_name(
    client: TestClient, parameter: str, moment: str, format: str
) -> None:
    # In JSON Lines the 200 went out before the records were read: the export ended cut short.
    response = client.get("/v1/audit", params={parameter: moment, "format": format})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["location"] == f"query.{parameter}"
    assert "UTC" in error["message"]


def test_the_widest_range_a_date_holds_is_still_served(client: TestClient) -> None:
    client.get("/v1/citizens/C-1/context", headers=access.supervisor())  # one record to find
    for format in ("json", "jsonl"):
        response = client.get(
            "/v1/audit",
            params={"since": "0001-01-01T00:00:00Z", "until": "9999-12-31T23:59:59+00:00", "format": format},
        )
        assert response.status_code == 200, response.text
        assert "C-1" not in response.text  # named by pseudonym
        assert "supervisor" in response.text


def test_the_database_failing_before_a_json_lines_export_starts_is_a_503_problem(
    client: TestClient, database_settings: DatabaseSettings
) -> None:
    # The first page is read before the answer starts: sent after a 200, the failure could only cut the
    # body short, and an auditor's tool might take the export for the whole trail.
    client.get("/v1/citizens/C-1/context", headers=access.supervisor())  # one record to find
    outage = DatabaseOutage(database_settings, sqlite_table="audit_records")
    outage.begin()
    try:
        response = client.get("/v1/audit", params={"format": "jsonl"})
    finally:
        outage.restore()
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "2"
    # Back, the export is whole again.
    restored = client.get("/v1/audit", params={"format": "jsonl"})
    assert restored.status_code == 200, restored.text
    assert any("supervisor" in line for line in restored.text.splitlines())


def test_a_json_lines_export_of_several_pages_has_every_record_once_in_order(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_routes, "EXPORT_PAGE", 2)
    for n in range(5):
        client.get(f"/v1/citizens/C-{n}/context", headers=access.supervisor())
    paged = client.get("/v1/audit", params={"limit": 1000}).json()["records"]
    exported = client.get("/v1/audit", params={"format": "jsonl"}).text.splitlines()
    ids = [json.loads(line)["id"] for line in exported]
    assert len(paged) >= 5
    # Every record the page held, once, oldest first (the export may hold its own read's record too).
    assert ids[: len(paged)] == [record["id"] for record in paged]
    assert ids == sorted(set(ids))
