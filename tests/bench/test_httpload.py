"""The bench's HTTP load generator, against a loopback server that closes each connection after one answer."""

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bench.httpload import open_loop

BODY = b'{"ok":true}'


@dataclass
class OneAnswerServer:
    port: int = 0
    answered: int = 0


@pytest.fixture
def one_answer_server() -> Iterator[OneAnswerServer]:
    """An HTTP server on loopback that answers one request per connection, then closes it (as a server
    does with a keep-alive connection idle past its timeout); it counts the requests it answered."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    server_state = OneAnswerServer()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        server_state.answered += 1  # before the answer: the client may finish before the drain returns
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
        await writer.drain()
        writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        server_state.port = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await server.serve_forever()

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # how the fixture stops it
            loop.run_until_complete(serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(5)
    yield server_state
    loop.call_soon_threadsafe(lambda: [task.cancel() for task in asyncio.all_tasks(loop)])
    thread.join(5)
    loop.close()


def test_a_keep_alive_connection_the_server_closed_is_replaced_not_counted_as_an_error(
    one_answer_server: OneAnswerServer,
) -> None:
    measured = open_loop("127.0.0.1", one_answer_server.port, ["/x"], {}, rate_per_s=50, duration_s=1)
    assert measured.errors == 0
    assert measured.completed == 50
    assert measured.statuses == {200: 50}


def test_requests_of_the_warm_up_are_sent_but_not_counted(one_answer_server: OneAnswerServer) -> None:
    measured = open_loop(
        "127.0.0.1", one_answer_server.port, ["/x"], {}, rate_per_s=50, duration_s=1, warm_up_s=0.6
    )
    assert one_answer_server.answered == 30 + 50
    assert measured.errors == 0
    assert measured.completed == len(measured.latencies) == 50
    assert measured.statuses == {200: 50}
    assert 0.9 <= measured.seconds < 1.5  # the measured stretch only, not the warm-up before it
