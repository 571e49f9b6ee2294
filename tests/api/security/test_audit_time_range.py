"""The audit trail's time filters: a time whose UTC equivalent no date can hold is a 422 naming it."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from context.settings import RedisSettings
from models.database import DatabaseSettings
from tests import access

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
