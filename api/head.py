"""HEAD wherever GET is served (RFC 9110, 9.3.2: a general-purpose server supports both): the answer a GET
would get, status and headers, without its body.

FastAPI routes answer only the methods they declare, so a client, cache or monitor asking HEAD of a GET
route got `405`. The request goes through as a GET (authentication, authorisation, the audit record of a
read and conditional requests included: a HEAD learns what a GET would, and is recorded as one), and only
the body is dropped. The server still sees a HEAD, and sends no body after the headers. A streamed answer
(an export) is still produced to its end, and recorded as the GET's would be: HEAD is no cheaper than GET
there, only the client is answered at once.
"""

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Set in the scope of a HEAD served as a GET, for what reports the request as the client made it (metrics).
SERVED_AS_GET = "citizen_context.head_served_as_get"


def request_method(scope: Scope) -> str:
    """The method the client used: HEAD for a HEAD, though every layer within this middleware sees a GET."""
    return "HEAD" if scope.get(SERVED_AS_GET) else str(scope["method"])


def allowed_with_head(methods: Iterable[str]) -> str:
    """A `405` answer's `Allow` value for a resource served with `methods`: with HEAD wherever GET is (the
    routes declare GET only, and a client reading the list would otherwise take HEAD to be refused)."""
    allowed = {method.strip().upper() for method in methods if method.strip()}
    if "GET" in allowed:
        allowed.add("HEAD")
    return ", ".join(sorted(allowed))


class HeadAsGetMiddleware:
    """Serves HEAD as GET, without the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        answered = False

        async def without_body(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body":
                # The first part of the body ends the answer, so a client is not kept waiting while a
                # streamed GET (an export) produces the rest, which goes nowhere.
                if answered:
                    return
                answered = True
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET", SERVED_AS_GET: True}, receive, without_body)
