"""The context read's direct path answers exactly as FastAPI's handler of the declared endpoint would."""

from collections.abc import Iterator
from typing import Annotated

import pytest
import redis
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pydantic import StringConstraints, TypeAdapter, ValidationError

from api.app import create_app
from api.routes.citizens import get_context, well_formed_read
from api.security.access import MAX_REASON
from context.settings import RedisSettings, TimelineSettings
from context.store import ProjectionWriter
from models.context import CitizenContext
from models.database import DatabaseSettings
from models.events import CITIZEN_ID_PATTERN
from models.tables import AgentRole
from tests import access
from tests.conftest import wait_until
from tests.factories import make_event, writes_for

# What the declared signature asks of the path and the header (pydantic judges them for FastAPI).
DECLARED_ID = TypeAdapter(Annotated[str, StringConstraints(pattern=CITIZEN_ID_PATTERN)])
DECLARED_REASON = TypeAdapter(Annotated[str, StringConstraints(max_length=MAX_REASON)])
SOLVED = "/solved"


def _declared_accepts(citizen_id: str, reason: str | None) -> bool:
    try:
        DECLARED_ID.validate_python(citizen_id)
        if reason is not None:
            DECLARED_REASON.validate_python(reason)
    except ValidationError:
        return False
    return True


@given(
    citizen_id=st.one_of(
        st.from_regex(CITIZEN_ID_PATTERN, fullmatch=True), st.text(max_size=140), st.just("C-1\n")
    ),
    reason=st.one_of(st.none(), st.text(max_size=MAX_REASON + 5)),
)
def test_the_direct_path_takes_only_what_the_declared_checks_accept(
    citizen_id: str, reason: str | None
) -> None:
    # Anything the guard lets through must be valid for FastAPI too (the rest goes to FastAPI's handler).
    assert well_formed_read(citizen_id, reason) == _declared_accepts(citizen_id, reason)


@pytest.fixture
def client(redis_settings: RedisSettings, database_settings: DatabaseSettings) -> Iterator[TestClient]:
    app = create_app(redis_settings=redis_settings, database=database_settings)
    # The same endpoint again, served by FastAPI's own handler (dependencies solved), for comparison.
    app.add_api_route(
        f"{SOLVED}/{{citizen_id}}/context", get_context, methods=["GET"], response_model=CitizenContext
    )
    with TestClient(app) as test_client:
        wait_until(lambda: test_client.get("/readyz").status_code == 200, what="readiness", timeout_s=10)
        yield test_client


def _answer(client: TestClient, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    response = client.get(path, headers=headers)
    kept = {
        name: response.headers[name]
        for name in ("content-type", "etag", "www-authenticate", "retry-after")
        if name in response.headers
    }
    # A problem names the path it answers; the two routes differ only there.
    return response.status_code, kept, response.content.replace(SOLVED.encode(), b"/v1/citizens")


def test_every_answer_is_the_same_as_the_solved_handlers(
    client: TestClient, redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    writer.apply_batch(writes_for(make_event("C-31", minutes_ago=3), make_event("C-31", minutes_ago=1)))
    enquiry = client.post(
        "/v1/enquiries", json={"citizen_id": "C-31", "channel": "phone"}, headers=access.agent()
    )
    assert enquiry.status_code == 201
    etag = client.get("/v1/citizens/C-31/context", headers=access.agent()).headers["etag"]
    cases = [
        ("C-31", access.agent()),  # allowed: an active enquiry
        ("C-32", access.agent()),  # refused: no enquiry for this citizen
        ("C-31", {**access.agent(), "If-None-Match": etag}),  # unchanged: 304
        ("C-31", {**access.agent(), "If-None-Match": '"other"'}),
        ("C-31", access.bearer(access.token("S-test", AgentRole.supervisor))),  # refused: no reason
        ("C-31", {**access.supervisor(), "X-Access-Reason": "complaint review"}),
        ("C-31", {**access.supervisor(), "X-Access-Reason": "x" * (MAX_REASON + 1)}),  # 422
        ("C-31", {}),  # 401
        ("C-31", access.bearer("not-a-token")),  # 401
        ("C-31", access.admin()),  # refused: admins do not read live context
        ("has%20space", access.agent()),  # 422
        ("has%20space", {}),  # 401 before the 422, as FastAPI solves dependencies first
        ("C-99", {**access.supervisor(), "X-Access-Reason": "audit"}),  # an unknown citizen is empty
    ]
    for citizen_id, headers in cases:
        direct = _answer(client, f"/v1/citizens/{citizen_id}/context", headers)
        solved = _answer(client, f"{SOLVED}/{citizen_id}/context", headers)
        assert direct == solved, (citizen_id, headers)
    statuses = [_answer(client, f"/v1/citizens/{c}/context", h)[0] for c, h in cases]
    assert statuses == [200, 403, 304, 200, 403, 200, 422, 401, 401, 403, 422, 401, 200]
