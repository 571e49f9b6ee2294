"""The API's HTTP/1.1 protocol: uvicorn's (httptools), answering a request it cannot parse as the app would.

A request that is not valid HTTP (a malformed request line, a header with a space in its name, a bad chunk
size) never reaches the app: uvicorn answers it itself, with a plain-text 400 and none of the headers every
other answer carries. Every error of this API is problem details (api/problems.py), which clients and the
desk parse by their content type; this one now is too, with the security headers (api/security/hygiene.py).
"""

import json
from http import HTTPStatus

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.problems import PROBLEM_CONTENT_TYPE
from api.security.hygiene import security_headers

# No `instance`: the request's target could not be read (or is the very part that was malformed).
_DETAIL = "The request is not valid HTTP/1.1, so it was not read; the connection is closed."


def unreadable_request_answer(*, hsts: bool, server_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The whole answer (status line, headers, body) to a request that could not be parsed (pure)."""
    body = json.dumps(
        {"type": "about:blank", "title": HTTPStatus.BAD_REQUEST.phrase, "status": 400, "detail": _DETAIL}
    ).encode()
    headers = [
        *server_headers,
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        # The parser has lost its place in the stream: nothing more can be read on this connection.
        (b"connection", b"close"),
        *security_headers("", hsts=hsts),
    ]
    lines = [b"HTTP/1.1 400 Bad Request"] + [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


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
