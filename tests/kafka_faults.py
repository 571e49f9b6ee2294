"""Brokers that go wrong, on loopback: one that takes connections and never answers, and one that answers
the first request of each connection and nothing after (a broker stalling under load, or one whose
advertised listener leads nowhere)."""

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def silent_broker() -> Iterator[str]:
    """An address ("host:port") that takes connections, as a broker still starting does, but never answers."""
    with _listening(lambda client: client.close()) as address:
        yield address


@contextlib.contextmanager
def stalling_broker(upstream: str) -> Iterator[str]:
    """An address in front of the broker at `upstream` that passes on only the first answer of each
    connection (kafka-python's version handshake), then holds every request after it unanswered."""
    host, _, port = upstream.rpartition(":")

    def serve(client: socket.socket) -> None:
        with client, socket.create_connection((host, int(port)), timeout=30) as broker:
            threading.Thread(target=_forward, args=(client, broker), daemon=True).start()
            with contextlib.suppress(OSError):
                size = _read_exactly(broker, 4)
                client.sendall(size + _read_exactly(broker, struct.unpack(">i", size)[0]))
                while broker.recv(65536):
                    pass  # every later answer is swallowed

    def start(client: socket.socket) -> None:
        threading.Thread(target=serve, args=(client,), daemon=True).start()

    with _listening(start) as address:
        yield address


@contextlib.contextmanager
def _listening(on_connection: Callable[[socket.socket], None]) -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                on_connection(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stopping.set()
        thread.join()
        listener.close()


def _forward(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)


def _read_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise OSError("the broker closed the connection")
        data += chunk
    return data
