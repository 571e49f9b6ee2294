"""Timeline paging and filters, ETag revalidation of the context, and identifier lookup, over REST."""

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from httpx2 import Response

from api.app import create_app
from context.keys import epoch_key
from context.settings import RedisSettings, TimelineSettings
from context.store import ProjectionWriter
from context.timeline import order_timeline
from models.database import DatabaseSettings
from models.events import CloudEvent
from tests import access
from tests.factories import example_data, make_event, writes_for

PROBLEM = "application/problem+json"
CITIZEN = "C-T100"
# The types the history cycles through, and the channel each one's example data names (None: no channel).
TYPES: dict[str, str | None] = {
    "call.started": "phone",
    "call.ended": "phone",
    "chat.message": "chat",
    "email.received": "email",
    "web.form.submitted": "web",
    "case.updated": "system",
    "payment.received": "online",
    "payment.failed": "direct-debit",
    "letter.sent": "post",
    "complaint.raised": "email",
    "enquiry.completed": "phone",
    "custom.thing": None,
}
SOURCES = ["/telephony/contact-centre", "/cases", "/payments/direct-debit"]
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def client(redis_settings: RedisSettings, database_settings: DatabaseSettings) -> Iterator[TestClient]:
    app = create_app(redis_settings=redis_settings, database=database_settings)
    # A server error is answered as the live server answers it (a 500 problem), so tests can assert on it.
    with TestClient(app, raise_server_exceptions=False, headers=access.supervisor()) as test_client:
        yield test_client


@pytest.fixture
def writer(redis_client: "redis.Redis", key_prefix: str) -> ProjectionWriter:
    return ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())


def minutes_ago_of(n: int) -> float:
    """Times with ties: twelve events share one moment, and every tenth event shares one with the next."""
    if 40 <= n < 52:
        return 40.0
    if n % 10 == 0:
        return n * 7.5 + 7.5
    return n * 7.5


def history(count: int = 120) -> list[CloudEvent]:
    """`count` events of one citizen over the last days: varied types, channels, sources and ties."""
    types = list(TYPES)
    return [
        make_event(
            CITIZEN,
            now=NOW,
            minutes_ago=minutes_ago_of(n),
            type_=types[n % len(types)],
            source=SOURCES[n % len(SOURCES)],
            data=example_data(types[n % len(types)]),
        )
        for n in range(count)
    ]


@pytest.fixture
def events(writer: ProjectionWriter) -> list[CloudEvent]:
    """The history, applied out of order (a fixed permutation) and in several batches, as a consumer would."""
    made = history()
    shuffled = [made[(n * 47) % len(made)] for n in range(len(made))]
    for start in range(0, len(shuffled), 25):
        writer.apply_batch(writes_for(*shuffled[start : start + 25]))
    return made


def ids(events: list[CloudEvent]) -> list[tuple[str, str]]:
    return [(event.source, event.id) for event in events]


def page_ids(page: dict[str, Any]) -> list[tuple[str, str]]:
    return [(event["source"], event["id"]) for event in page["events"]]


def walk(client: TestClient, citizen_id: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every page from the first, following `next_cursor` until it is null (bounded)."""
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(500):
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = client.get(f"/v1/citizens/{citizen_id}/timeline", params=query)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        assert page["citizen_id"] == citizen_id
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
    pytest.fail("next_cursor never became null")


def walked(client: TestClient, limit: int, **params: Any) -> list[tuple[str, str]]:
    """The ids a whole walk visits, checking that every page but the last is full."""
    pages = walk(client, CITIZEN, limit, **params)
    assert all(len(page["events"]) == limit for page in pages[:-1]), [len(p["events"]) for p in pages]
    assert len(pages[-1]["events"]) <= limit
    assert len({page["epoch"] for page in pages}) == 1
    return [found for page in pages for found in page_ids(page)]


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    return problem


def channel_of(event: CloudEvent) -> str | None:
    return event.data.get("channel") if isinstance(event.data, dict) else None


def test_the_history_has_ties_across_page_boundaries(events: list[CloudEvent]) -> None:
    times = [event.time for event in events]
    assert max(times.count(moment) for moment in times) == 12
    assert all(channel_of(event) == TYPES[event.type] for event in events)
    assert sum(1 for moment in set(times) if times.count(moment) == 2) >= 5


def test_walking_with_limit_7_visits_every_event_once_newest_first(
    client: TestClient, events: list[CloudEvent]
) -> None:
    pages = walk(client, CITIZEN, 7)
    assert len(pages) == 18  # 120 = 17 x 7 + 1
    assert pages[-1]["next_cursor"] is None
    visited = [found for page in pages for found in page_ids(page)]
    assert visited == ids(order_timeline(events))
    assert len(set(visited)) == len(events)


def test_pages_hold_the_events_as_they_were_published(client: TestClient, events: list[CloudEvent]) -> None:
    page = client.get(f"/v1/citizens/{CITIZEN}/timeline", params={"limit": 200}).json()
    assert page["next_cursor"] is None
    by_key = {(event.source, event.id): event for event in events}
    assert [CloudEvent.model_validate(event) for event in page["events"]] == [
        by_key[key] for key in page_ids(page)
    ]
    assert page_ids(page) == ids(order_timeline(events))


@pytest.mark.parametrize("limit", [1, 11, 12, 50, 119, 120, 121, 200])
def test_every_page_size_walks_the_same_timeline(
    client: TestClient, events: list[CloudEvent], limit: int
) -> None:
    assert walked(client, limit) == ids(order_timeline(events))


def test_the_default_page_is_the_newest_50(client: TestClient, events: list[CloudEvent]) -> None:
    page = client.get(f"/v1/citizens/{CITIZEN}/timeline").json()
    assert page_ids(page) == ids(order_timeline(events))[:50]
    assert page["next_cursor"] is not None


def test_an_exactly_full_last_page_has_no_next_cursor(client: TestClient, events: list[CloudEvent]) -> None:
    calls = [event for event in order_timeline(events) if event.type == "call.ended"]
    assert len(calls) == 10
    pages = walk(client, CITIZEN, 5, type=["call.ended"])
    assert [len(page["events"]) for page in pages] == [5, 5]
    assert pages[-1]["next_cursor"] is None
    assert [found for page in pages for found in page_ids(page)] == ids(calls)


@pytest.mark.parametrize(
    "types",
    [["call.ended"], ["chat.message", "letter.sent"], ["custom.thing", "payment.failed", "call.started"]],
)
def test_filter_by_type(client: TestClient, events: list[CloudEvent], types: list[str]) -> None:
    expected = [event for event in order_timeline(events) if event.type in types]
    assert expected
    assert walked(client, 7, type=types) == ids(expected)
    assert walked(client, 200, type=types) == ids(expected)


def test_a_type_nobody_published_gives_one_empty_page(client: TestClient, events: list[CloudEvent]) -> None:
    pages = walk(client, CITIZEN, 7, type=["case.closed"])
    assert [(page["events"], page["next_cursor"]) for page in pages] == [([], None)]


@pytest.mark.parametrize("channels", [["email"], ["phone", "post"], ["direct-debit"]])
def test_filter_by_channel(client: TestClient, events: list[CloudEvent], channels: list[str]) -> None:
    expected = [event for event in order_timeline(events) if channel_of(event) in channels]
    assert expected
    assert walked(client, 7, channel=channels) == ids(expected)


def test_filter_by_type_and_channel(client: TestClient, events: list[CloudEvent]) -> None:
    expected = [
        event
        for event in order_timeline(events)
        if event.type in {"email.received", "call.ended"} and channel_of(event) == "email"
    ]
    assert expected
    assert walked(client, 3, type=["email.received", "call.ended"], channel=["email"]) == ids(expected)


@pytest.mark.parametrize(
    ("since_minutes", "until_minutes"),
    [
        (40, None),  # exactly the moment twelve events share: they are all in
        (None, 40),
        (400.5, 40),
        (600, 300),
        (232.5, 232.5),  # exactly the moment two events share
        (292.5, 292.5),
        (None, 10_000),
        (0, None),
        (-10, None),
    ],
)
def test_filter_by_time(
    client: TestClient, events: list[CloudEvent], since_minutes: float | None, until_minutes: float | None
) -> None:
    since = NOW - timedelta(minutes=since_minutes) if since_minutes is not None else None
    until = NOW - timedelta(minutes=until_minutes) if until_minutes is not None else None
    expected = [
        event
        for event in order_timeline(events)
        if (since is None or event.time >= since) and (until is None or event.time <= until)
    ]
    params = {
        **({"since": since.isoformat()} if since else {}),
        **({"until": until.isoformat()} if until else {}),
    }
    assert walked(client, 7, **params) == ids(expected)
    assert walked(client, 200, **params) == ids(expected)


def timezone_shifted(moment: datetime, *, hours: int) -> str:
    return moment.astimezone(timezone(timedelta(hours=hours))).isoformat()


def test_time_filters_accept_any_offset(client: TestClient, events: list[CloudEvent]) -> None:
    since = NOW - timedelta(minutes=300)
    until = NOW - timedelta(minutes=100)
    in_paris = timezone_shifted(since, hours=1)
    expected = [event for event in order_timeline(events) if since <= event.time <= until]
    until_z = until.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert walked(client, 4, since=in_paris, until=until_z) == ids(expected)


def test_filters_combine_with_time(client: TestClient, events: list[CloudEvent]) -> None:
    since = NOW - timedelta(minutes=600)
    expected = [
        event
        for event in order_timeline(events)
        if event.time >= since and event.type in {"call.started", "call.ended", "custom.thing"}
    ]
    walk_ids = walked(client, 2, type=["call.started", "call.ended", "custom.thing"], since=since.isoformat())
    assert walk_ids == ids(expected)


def test_a_cursor_walks_on_while_events_arrive(
    client: TestClient, writer: ProjectionWriter, events: list[CloudEvent]
) -> None:
    first = client.get(f"/v1/citizens/{CITIZEN}/timeline", params={"limit": 30}).json()
    newer = make_event(CITIZEN, now=NOW, minutes_ago=-1)
    older = make_event(CITIZEN, now=NOW, minutes_ago=100_000 / 60)  # within the kept age, oldest of all
    writer.apply_batch(writes_for(newer, older))
    rest: list[tuple[str, str]] = []
    cursor = first["next_cursor"]
    for _ in range(100):
        page = client.get(f"/v1/citizens/{CITIZEN}/timeline", params={"limit": 30, "cursor": cursor}).json()
        rest.extend(page_ids(page))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert cursor is None
    assert page_ids(first) + rest == ids(order_timeline([*events, older]))


def test_an_unknown_citizen_has_an_empty_timeline(client: TestClient, events: list[CloudEvent]) -> None:
    response = client.get("/v1/citizens/C-NOBODY/timeline")
    assert response.status_code == 200
    assert response.json()["events"] == []
    assert response.json()["next_cursor"] is None


def test_an_empty_projection_has_an_empty_timeline(client: TestClient) -> None:
    response = client.get(f"/v1/citizens/{CITIZEN}/timeline")
    assert response.status_code == 200
    assert (response.json()["events"], response.json()["next_cursor"]) == ([], None)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


INVALID_CURSORS: dict[str, Callable[[str], str]] = {
    "not-base64": lambda epoch: "not a cursor!",
    "not-json": lambda epoch: b64(b"{not json"),
    "not-utf8": lambda epoch: b64(b"\xff\xfe\x00"),
    "too-short": lambda epoch: "@@@@",
    "an-object": lambda epoch: b64(json.dumps({"epoch": epoch}).encode()),
    "a-number": lambda epoch: b64(json.dumps(42).encode()),
    "a-string": lambda epoch: b64(json.dumps("abc").encode()),
    "one-item": lambda epoch: b64(json.dumps(["abc"]).encode()),
    "two-items": lambda epoch: b64(json.dumps([epoch, 12]).encode()),
    "score-a-string": lambda epoch: b64(json.dumps([epoch, "12", "key"]).encode()),
    "score-a-float": lambda epoch: b64(json.dumps([epoch, 1.5, "key"]).encode()),
    "score-true": lambda epoch: b64(json.dumps([epoch, True, "key"]).encode()),
    "score-false": lambda epoch: b64(json.dumps([epoch, False, ""]).encode()),
    "key-a-number": lambda epoch: b64(json.dumps([epoch, 12, 13]).encode()),
    # JSON's unpaired escapes, which no cursor issued holds and no Redis command takes.
    "key-a-lone-surrogate": lambda epoch: b64(json.dumps([epoch, 12, "\udc80"]).encode()),
    "epoch-a-lone-surrogate": lambda epoch: b64(json.dumps([epoch + "\ud800", 12, "key"]).encode()),
    # Deep enough to exhaust the JSON parser, within the parameter's 2,000 characters.
    "nested-deeply": lambda _epoch: b64(b"[" * 1500),
}


@pytest.mark.parametrize("make_cursor", INVALID_CURSORS.values(), ids=INVALID_CURSORS.keys())
def test_an_invalid_cursor_is_a_422_problem(
    client: TestClient, events: list[CloudEvent], make_cursor: Callable[[str], str]
) -> None:
    epoch = client.get(f"/v1/citizens/{CITIZEN}/timeline", params={"limit": 1}).json()["epoch"]
    response = client.get(f"/v1/citizens/{CITIZEN}/timeline", params={"cursor": make_cursor(epoch)})
    problem = assert_problem(response, 422)
    # As every other invalid parameter: named in the errors list.
    assert [error["location"] for error in problem["errors"]] == ["query.cursor"]
    assert "cursor" in problem["errors"][0]["message"]


def test_an_invalid_cursor_is_named_with_the_other_invalid_parameters(
    client: TestClient, events: list[CloudEvent]
) -> None:
    response = client.get(
        f"/v1/citizens/{CITIZEN}/timeline", params={"cursor": "zzz", "limit": 0, "since": "yesterday"}
    )
    problem = assert_problem(response, 422)
    assert sorted(error["location"] for error in problem["errors"]) == [
        "query.cursor",
        "query.limit",
        "query.since",
    ]


@pytest.mark.parametrize("parameter", ["since", "until"])
@pytest.mark.parametrize("number", ["2026", "1764547200", " 1.5e9", "-1"])
def test_a_number_is_no_time_to_filter_by(
    client: TestClient, events: list[CloudEvent], parameter: str, number: str
) -> None:
    # pydantic read one as Unix seconds or milliseconds by its size: since=2026 (the year) was 1970.
    response = client.get(f"/v1/citizens/{CITIZEN}/timeline", params={parameter: number})
    problem = assert_problem(response, 422)
    assert [error["location"] for error in problem["errors"]] == [f"query.{parameter}"]
    assert "not a number" in problem["errors"][0]["message"]


def test_a_cursor_from_before_a_rebuild_is_a_410_problem(
    client: TestClient, events: list[CloudEvent], redis_client: "redis.Redis", key_prefix: str
) -> None:
    first = client.get(f"/v1/citizens/{CITIZEN}/timeline", params={"limit": 7}).json()
    assert first["next_cursor"] is not None
    redis_client.set(epoch_key(key_prefix), "20991231T000000-abcdef")
    response = client.get(
        f"/v1/citizens/{CITIZEN}/timeline", params={"limit": 7, "cursor": first["next_cursor"]}
    )
    problem = assert_problem(response, 410)
    assert "start from the first page" in problem["detail"]
    restarted = client.get(f"/v1/citizens/{CITIZEN}/timeline", params={"limit": 7}).json()
    assert restarted["epoch"] == "20991231T000000-abcdef"


@pytest.mark.parametrize("limit", ["0", "-1", "201", "1000", "seven", "1.5"])
def test_a_limit_out_of_range_is_a_422_problem(
    client: TestClient, events: list[CloudEvent], limit: str
) -> None:
    response = client.get(f"/v1/citizens/{CITIZEN}/timeline", params={"limit": limit})
    problem = assert_problem(response, 422)
    assert [error["location"] for error in problem["errors"]] == ["query.limit"]


@pytest.mark.parametrize(
    "params",
    [{"since": "yesterday"}, {"until": "2026-11-28T10:00:00"}, {"cursor": "x" * 2001}],
)
def test_other_invalid_parameters_are_422_problems(
    client: TestClient, events: list[CloudEvent], params: dict[str, str]
) -> None:
    assert_problem(client.get(f"/v1/citizens/{CITIZEN}/timeline", params=params), 422)


def test_an_invalid_citizen_id_is_a_422_problem(client: TestClient) -> None:
    problem = assert_problem(client.get("/v1/citizens/has%20space/timeline"), 422)
    assert problem["errors"][0]["location"] == "path.citizen_id"


def test_ties_beyond_one_scan_are_walked_without_gaps(
    redis_client: "redis.Redis",
    key_prefix: str,
    redis_settings: RedisSettings,
    database_settings: DatabaseSettings,
) -> None:
    """A deployment that keeps more than 200 events per citizen can hold more than 200 at one moment."""
    timeline = TimelineSettings(max_events=1000)
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=timeline)
    moment = NOW - timedelta(hours=1)
    tied = [make_event(CITIZEN, now=moment, type_="letter.sent") for _ in range(260)]
    for start in range(0, len(tied), 100):
        writer.apply_batch(writes_for(*tied[start : start + 100]))
    app = create_app(redis_settings=redis_settings, database=database_settings, timeline=timeline)
    with TestClient(app, headers=access.supervisor()) as client:
        visited = [found for page in walk(client, CITIZEN, 50) for found in page_ids(page)]
    assert len(visited) == len(tied)
    assert visited == ids(order_timeline(tied))


# --- ETag and If-None-Match on the context -----------------------------------------------------------


def test_the_context_is_revalidated_with_its_etag(client: TestClient, writer: ProjectionWriter) -> None:
    writer.apply_batch(writes_for(make_event("C-E1", minutes_ago=5), make_event("C-E1", minutes_ago=3)))
    first = client.get("/v1/citizens/C-E1/context")
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert first.json()["version"] == 2

    unchanged = client.get("/v1/citizens/C-E1/context", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == etag

    among_others = client.get("/v1/citizens/C-E1/context", headers={"If-None-Match": f'"nope", {etag}'})
    assert among_others.status_code == 304

    writer.apply_batch(writes_for(make_event("C-E1", minutes_ago=1)))
    changed = client.get("/v1/citizens/C-E1/context", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["version"] == 3
    assert len(changed.json()["timeline"]) == 3
    again = client.get("/v1/citizens/C-E1/context", headers={"If-None-Match": changed.headers["etag"]})
    assert again.status_code == 304


def test_a_stale_or_foreign_etag_gets_the_whole_context(client: TestClient, writer: ProjectionWriter) -> None:
    writer.apply_batch(writes_for(make_event("C-E2")))
    for tag in ['"something-else"', "garbage", ""]:
        response = client.get("/v1/citizens/C-E2/context", headers={"If-None-Match": tag})
        assert response.status_code == 200
        assert response.json()["version"] == 1
        assert response.headers["etag"]


def test_etags_differ_between_citizens_and_for_the_empty_context(
    client: TestClient, writer: ProjectionWriter
) -> None:
    writer.apply_batch(writes_for(make_event("C-E3")))
    empty = client.get("/v1/citizens/C-E4/context")
    known = client.get("/v1/citizens/C-E3/context")
    assert empty.status_code == known.status_code == 200
    assert empty.json()["version"] == 0
    assert empty.headers["etag"] != known.headers["etag"]


def test_a_weak_validator_of_the_etag_also_revalidates(client: TestClient, writer: ProjectionWriter) -> None:
    """RFC 9110 13.1.2: If-None-Match uses the weak comparison (proxies that compress weaken ETags)."""
    writer.apply_batch(writes_for(make_event("C-E5")))
    etag = client.get("/v1/citizens/C-E5/context").headers["etag"]
    response = client.get("/v1/citizens/C-E5/context", headers={"If-None-Match": f"W/{etag}"})
    assert response.status_code == 304


# --- Lookup by identifier -------------------------------------------------------------------------------


@pytest.fixture
def taught(writer: ProjectionWriter) -> None:
    writer.apply_batch(
        writes_for(
            make_event("C-L1", type_="profile.updated", data=example_data("profile.updated")),
            make_event("C-L2", type_="case.opened", data=example_data("case.opened", case_ref="hb-9001")),
        )
    )


# The identifier in the body (preferred: no proxy logs it), or in the URL's query.
LOOKUP_METHODS = ["POST", "GET"]


def look_up(client: TestClient, method: str, identifier: dict[str, str]) -> Response:
    if method == "POST":
        return client.post("/v1/citizens/lookup", json=identifier)
    return client.get("/v1/citizens/lookup", params=identifier)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"phone": "07700 900123"}, {"citizen_id": "C-L1", "kind": "phone", "value": "+447700900123"}),
        ({"phone": "+44 7700 900123"}, {"citizen_id": "C-L1", "kind": "phone", "value": "+447700900123"}),
        ({"phone": "+447700900123"}, {"citizen_id": "C-L1", "kind": "phone", "value": "+447700900123"}),
        (
            {"email": " Anna.Jones@EXAMPLE.org "},
            {"citizen_id": "C-L1", "kind": "email", "value": "anna.jones@example.org"},
        ),
        ({"case": "hb-9001"}, {"citizen_id": "C-L2", "kind": "case", "value": "HB-9001"}),
    ],
)
@pytest.mark.parametrize("method", LOOKUP_METHODS)
def test_lookup_finds_the_citizen(
    client: TestClient, taught: None, params: dict[str, str], expected: dict[str, str], method: str
) -> None:
    response = look_up(client, method, params)
    assert response.status_code == 200, response.text
    assert response.json() == expected


def test_lookup_of_the_documented_url(client: TestClient, taught: None) -> None:
    response = client.get("/v1/citizens/lookup?phone=07700%20900123")
    assert response.status_code == 200
    assert response.json() == {"citizen_id": "C-L1", "kind": "phone", "value": "+447700900123"}


@pytest.mark.parametrize(
    ("params", "headers", "status"),
    [
        ({"phone": "07700 900123"}, {}, 200),
        ({"phone": "07700 900999"}, {}, 404),
        ({"phone": "0" * 41}, {}, 422),
        ({"phone": "07700 900123"}, {"Authorization": "Bearer forged"}, 401),
    ],
)
def test_every_answer_of_a_lookup_in_the_url_says_it_is_deprecated_and_what_replaces_it(
    client: TestClient, taught: None, params: dict[str, str], headers: dict[str, str], status: int
) -> None:
    # Found, not found or refused: an integrator who never reads the OpenAPI document again still sees it.
    response = client.get("/v1/citizens/lookup", params=params, headers=headers)
    assert response.status_code == status
    assert response.headers["deprecation"] == "@1795996800"
    assert response.headers["link"] == '</v1/citizens/lookup>; rel="successor-version"'
    posted = client.post("/v1/citizens/lookup", json=params, headers=headers)
    assert "deprecation" not in posted.headers


@pytest.mark.parametrize(
    "params", [{"phone": "07700 900999"}, {"email": "someone@example.org"}, {"case": "HB-4471"}]
)
@pytest.mark.parametrize("method", LOOKUP_METHODS)
def test_lookup_of_an_unknown_identifier_is_a_404_problem(
    client: TestClient, taught: None, params: dict[str, str], method: str
) -> None:
    assert_problem(look_up(client, method, params), 404)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"phone": ""},
        {"phone": "07700 900123", "email": "anna.jones@example.org"},
        {"email": "anna.jones@example.org", "case": "HB-9001"},
        {"phone": "07700 900123", "email": "anna.jones@example.org", "case": "HB-9001"},
    ],
)
@pytest.mark.parametrize("method", LOOKUP_METHODS)
def test_lookup_needs_exactly_one_identifier(
    client: TestClient, taught: None, params: dict[str, str], method: str
) -> None:
    assert_problem(look_up(client, method, params), 422)


@pytest.mark.parametrize(
    "params",
    [
        {"phone": "not a number"},
        {"phone": "123"},
        {"email": "anna.jones"},
        {"case": "#!"},
        {"phone": "0" * 41},
    ],
)
@pytest.mark.parametrize("method", LOOKUP_METHODS)
def test_lookup_of_a_malformed_identifier_is_a_422_problem(
    client: TestClient, taught: None, params: dict[str, str], method: str
) -> None:
    assert_problem(look_up(client, method, params), 422)


@pytest.mark.parametrize("body", [{"phone": 7700900123}, {"phone": None, "email": None}, [], "07700 900123"])
def test_a_lookup_body_that_is_not_one_identifier_is_a_422_problem(
    client: TestClient, taught: None, body: object
) -> None:
    assert_problem(client.post("/v1/citizens/lookup", json=body), 422)


def test_the_lookup_by_url_is_documented_as_deprecated_in_favour_of_the_body(client: TestClient) -> None:
    # A phone number or email address in a URL ends up in every proxy's and browser's history.
    lookup = client.get("/openapi.json").json()["paths"]["/v1/citizens/lookup"]
    assert lookup["get"]["deprecated"] is True
    assert "deprecated" not in lookup["post"]
    assert lookup["post"]["requestBody"]["required"] is True


def test_validation_problems_say_what_is_wrong_in_words_a_caller_can_act_on(client: TestClient) -> None:
    long_reason = {"X-Access-Reason": "a" * 600}
    problem = assert_problem(client.get("/v1/citizens/C-1/context", headers=long_reason), 422)
    assert problem["errors"] == [
        {"location": "header.X-Access-Reason", "message": "Text should have at most 500 characters, not 600"}
    ]
    malformed = client.post(
        "/v1/citizens/lookup", content=b'{"phone": oops}', headers={"content-type": "application/json"}
    )
    problem = assert_problem(malformed, 422)
    assert problem["errors"] == [
        {"location": "body", "message": "The body is not JSON: Expecting value at character 10"}
    ]
