"""The bench's agents send a request again when the API answers 503, after its Retry-After, as the API asks
of every client; other errors, and a 503 that lasts, still fail the figure."""

import asyncio

import httpx
import pytest

from bench import access


def replies(*statuses: int) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering each request with the next status (a 503 says Retry-After: 0)."""
    sent: list[httpx.Request] = []
    queue = list(statuses)

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        status = queue.pop(0)
        headers = {"Retry-After": "0"} if status == 503 else {}
        return httpx.Response(status, json={"detail": "The database is unavailable"}, headers=headers)

    return httpx.MockTransport(answer), sent


def post(transport: httpx.MockTransport) -> httpx.Response:
    async def run() -> httpx.Response:
        async with httpx.AsyncClient(base_url="http://api", transport=transport) as client:
            return await access.post_with_retry_after(
                client, "/v1/enquiries", json={"citizen_id": "C-1"}, headers={"Authorization": "Bearer t"}
            )

    return asyncio.run(run())


def test_a_503_is_sent_again_until_it_is_served() -> None:
    transport, sent = replies(503, 503, 201)
    assert post(transport).status_code == 201
    assert len(sent) == 3
    assert {request.read() for request in sent} == {b'{"citizen_id":"C-1"}'}
    assert {request.headers["Authorization"] for request in sent} == {"Bearer t"}


def test_a_503_that_lasts_fails_after_every_attempt() -> None:
    transport, sent = replies(*[503] * access.ATTEMPTS)
    with pytest.raises(httpx.HTTPStatusError):
        post(transport)
    assert len(sent) == access.ATTEMPTS


@pytest.mark.parametrize("status", [400, 403, 500])
def test_any_other_error_fails_at_once(status: int) -> None:
    transport, sent = replies(status)
    with pytest.raises(httpx.HTTPStatusError):
        post(transport)
    assert len(sent) == 1
