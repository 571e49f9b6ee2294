"""The API's HTTP/1.1 and WebSocket protocols: uvicorn's (httptools; websockets), answering a request they
cannot take as the app would.

A request that is not valid HTTP (a malformed request line, a header with a space in its name, a bad chunk
size) never reaches the app: uvicorn answers it itself, with a plain-text 400 and none of the headers every
other answer carries. So does the WebSocket library a handshake it refuses (a missing or malformed
`Sec-WebSocket-Key`, an unsupported `Sec-WebSocket-Version`). Every error of this API is problem details
(api/problems.py), which clients and the desk parse by their content type; these now are too, with the
security headers (api/security/hygiene.py).
"""

import json
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from api.problems import PROBLEM_CONTENT_TYPE
from api.security.hygiene import security_headers

_DETAIL = "The request is not valid HTTP/1.1, so it was not read; the connection is closed."


def _problem(
    status: int, detail: str, *, hsts: bool, server_headers: list[tuple[bytes, bytes]]
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and body of a problem answered outside the app, on a connection closed after it (pure).
    No `instance`: the request's target could not be read, or is the very part that was refused."""
    body = json.dumps(
        {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    ).encode()
    headers = [
        *server_headers,
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        # Nothing more is read on this connection (the parser has lost its place; no stream was opened).
        (b"connection", b"close"),
        *security_headers("", hsts=hsts),
    ]
    return headers, body


def unreadable_request_answer(*, hsts: bool, server_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole answer (status line, headers, body) to a request that could not be parsed (pure)."""
    headers, body = _problem(400, _DETAIL, hsts=hsts, server_headers=server_headers)
    lines = [b"HTTP/1.1 400 Bad Request"] + [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# The WebSocket library's refusals start so, then say what was wrong with the handshake.
_LIBRARY_PREFIX = b"Failed to open a WebSocket connection: "


def refused_handshake_answer(
    refusal: Response, *, hsts: bool, server_headers: list[tuple[bytes, bytes]]
) -> Response:
    """The WebSocket library's refusal of a handshake (a plain-text 400 or 426) as problem details, its status
    and `Upgrade` header kept (pure)."""
    reason = refusal.body.split(b"\n", 1)[0].removeprefix(_LIBRARY_PREFIX).decode("utf-8", "replace")[:200]
    detail = f"The request is not a valid WebSocket handshake ({reason.rstrip('.')}); no stream was opened."
    headers, body = _problem(refusal.status_code, detail, hsts=hsts, server_headers=server_headers)
    kept = [("upgrade", value) for value in refusal.headers.get_all("Upgrade")]
    return Response(
        refusal.status_code,
        refusal.reason_phrase,
        Headers([*((name.decode(), value.decode()) for name, value in headers), *kept]),
        body,
    )


def problem_protocol(*, hsts: bool) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol class, with problem details for a request it cannot parse (for
    `uvicorn.Config(http=...)`); `hsts` as the app's security settings say."""

    class ProblemHttpToolsProtocol(HttpToolsProtocol):
        def send_400_response(self, msg: str) -> None:
            # `msg` is uvicorn's own ("Invalid HTTP request received."), which its logger has written already.
            self.transport.write(
                unreadable_request_answer(hsts=hsts, server_headers=list(self.server_state.default_headers))
            )
            self.transport.close()

    return ProblemHttpToolsProtocol


def problem_websocket_protocol(*, hsts: bool) -> type[WebSocketsSansIOProtocol]:
    """uvicorn's websockets (sans-I/O) protocol class, with problem details for a handshake the WebSocket
    library refuses (for `uvicorn.Config(ws=...)`); `hsts` as the app's security settings say."""

    class ProblemWebSocketsProtocol(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            accept = self.conn.accept

            def accept_or_refuse(request: Request) -> Response:
                response = accept(request)
                if response.status_code == HTTPStatus.SWITCHING_PROTOCOLS:
                    return response
                return refused_handshake_answer(
                    response, hsts=hsts, server_headers=list(self.default_headers)
                )

            self.conn.accept = accept_or_refuse  # type: ignore[method-assign]

    return ProblemWebSocketsProtocol
