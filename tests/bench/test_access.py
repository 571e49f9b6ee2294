"""The bench's agents send a request again when the API answers 503, after its Retry-After, as the API asks
of every client; other errors, and a 503 that lasts, still fail the figure."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from bench import access


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The seconds each wait between attempts asked for (none is waited)."""
    asked: list[float] = []

    async def sleep(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr("bench.access.asyncio.sleep", sleep)
    return asked


def replies(*statuses: int, retry_after: str | None = "2") -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering each request with the next status; a 503 says `retry_after`, when given."""
    sent: list[httpx.Request] = []
    queue = list(statuses)

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        status = queue.pop(0)
        headers = {"Retry-After": retry_after} if status == 503 and retry_after is not None else {}
        return httpx.Response(status, json={"detail": "The database is unavailable"}, headers=headers)

    return httpx.MockTransport(answer), sent


def post(transport: httpx.MockTransport) -> httpx.Response:
    async def run() -> httpx.Response:
        async with httpx.AsyncClient(base_url="http://api", transport=transport) as client:
            return await access.post_with_retry_after(
                client, "/v1/enquiries", json={"citizen_id": "C-1"}, headers={"Authorization": "Bearer t"}
            )

    return asyncio.run(run())


def test_a_503_is_sent_again_after_its_retry_after_until_it_is_served(waits: list[float]) -> None:
    transport, sent = replies(503, 503, 201)
    assert post(transport).status_code == 201
    assert waits == [2.0, 2.0]
    assert [json.loads(request.content) for request in sent] == [{"citizen_id": "C-1"}] * 3
    assert {request.headers["Authorization"] for request in sent} == {"Bearer t"}


def test_a_503_that_lasts_fails_after_every_attempt(waits: list[float]) -> None:
    transport, sent = replies(*[503] * access.ATTEMPTS)
    with pytest.raises(httpx.HTTPStatusError):
        post(transport)
    assert len(sent) == access.ATTEMPTS
    assert len(waits) == access.ATTEMPTS - 1  # none after the last


@pytest.mark.parametrize("status", [400, 403, 500])
def test_any_other_error_fails_at_once(status: int, waits: list[float]) -> None:
    transport, sent = replies(status)
    with pytest.raises(httpx.HTTPStatusError):
        post(transport)
    assert len(sent) == 1
    assert waits == []


def test_a_503_without_retry_after_waits_a_second(waits: list[float]) -> None:
    transport, _sent = replies(503, 201, retry_after=None)
    assert post(transport).status_code == 201
    assert waits == [1.0]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 3 ", 3.0),
        ("3600", access.MAX_RETRY_AFTER_S),  # bounded: a figure is timed in minutes
        ("-5", 1.0),  # not a number of seconds, nor a date
        ("nan", 1.0),
        ("soon", 1.0),
        ("", 1.0),
        (None, 1.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date gone by: at once
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date_and_bounded(value: str | None, seconds: float) -> None:
    assert access.retry_after_s(value) == seconds


def test_retry_after_as_a_date_to_come_waits_until_then() -> None:
    value = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    assert 8.0 <= access.retry_after_s(value) <= 10.0
