"""A request the server cannot parse as HTTP is answered with problem details, by the real API process."""

import json
import socket

import h11
import pytest
from websockets.datastructures import Headers
from websockets.http11 import Response

from api.http_protocol import refused_handshake_answer, unreadable_request_answer
from tests.conftest import Stack


def _parse(raw: bytes) -> tuple[h11.Response, bytes]:
    """The response and body in `raw`, read by h11 (an independent parser)."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "api")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    response = client.next_event()
    assert isinstance(response, h11.Response)
    body = b""
    while isinstance(event := client.next_event(), h11.Data):
        body += event.data
    assert isinstance(event, h11.EndOfMessage)
    return response, body


def _exchange(port: int, request: bytes) -> bytes:
    """Send `request` raw and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"NOT HTTP AT ALL\r\n\r\n", id="request line"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: api\r\nBad Header: x\r\n\r\n", id="header name"),
        pytest.param(
            b"POST /v1/events HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            id="chunk size",
        ),
    ],
)
def test_a_request_that_is_not_http_gets_a_400_problem_with_the_security_headers(
    stack: Stack, request_bytes: bytes
) -> None:
    stack.api()
    response, body = _parse(_exchange(stack.api_port, request_bytes))
    headers = {name.decode(): value.decode() for name, value in response.headers}
    assert response.status_code == 400
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"].startswith("default-src 'none'")
    assert headers["connection"] == "close"
    assert "strict-transport-security" not in headers  # not behind TLS in this test
    problem = json.loads(body)
    assert problem["status"] == 400
    assert problem["title"] == "Bad Request"
    assert "not valid HTTP" in problem["detail"]


def test_the_unreadable_request_answer_is_well_formed_http_with_hsts_when_asked() -> None:
    raw = unreadable_request_answer(hsts=True, server_headers=[(b"server", b"uvicorn")])
    response, body = _parse(raw)
    headers = dict(response.headers)
    assert headers[b"strict-transport-security"].startswith(b"max-age=")
    assert headers[b"server"] == b"uvicorn"
    assert int(headers[b"content-length"]) == len(body)
    assert json.loads(body)["status"] == 400


HANDSHAKE = (
    b"GET /v1/citizens/C-1/stream HTTP/1.1\r\nHost: api\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
)


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        pytest.param(
            HANDSHAKE + b"Sec-WebSocket-Version: 13\r\n\r\n", "missing Sec-WebSocket-Key header", id="no key"
        ),
        pytest.param(
            HANDSHAKE + b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            "invalid Sec-WebSocket-Version header: 8",
            id="old version",
        ),
    ],
)
def test_a_websocket_handshake_the_server_refuses_gets_a_problem_with_the_security_headers(
    stack: Stack, request_bytes: bytes, reason: str
) -> None:
    # It got the WebSocket library's plain text.
    stack.api()
    response, body = _parse(_exchange(stack.api_port, request_bytes))
    headers = {name.decode(): value.decode() for name, value in response.headers}
    assert response.status_code == 400
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"].startswith("default-src 'none'")
    problem = json.loads(body)
    assert (problem["status"], problem["title"]) == (400, "Bad Request")
    assert (
        problem["detail"]
        == f"The request is not a valid WebSocket handshake ({reason}); no stream was opened."
    )


def test_a_refused_handshake_that_asks_for_an_upgrade_keeps_its_status_and_upgrade_header() -> None:
    refusal = Response(
        426,
        "Upgrade Required",
        Headers([("Upgrade", "websocket")]),
        b"Failed to open a WebSocket connection: x.\n",
    )
    answer = refused_handshake_answer(refusal, hsts=False, server_headers=[(b"server", b"uvicorn")])
    assert (answer.status_code, answer.headers["Upgrade"], answer.headers["server"]) == (
        426,
        "websocket",
        "uvicorn",
    )
    assert int(answer.headers["content-length"]) == len(answer.body)
    assert json.loads(answer.body)["title"] == "Upgrade Required"
