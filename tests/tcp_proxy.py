"""A TCP proxy on loopback that can go silent: the connection a firewall or a load balancer dropped without
a word (no reset, no answer), as the server on the far side sees nothing more either."""

import contextlib
import socket
import threading


class SilenceableProxy:
    """Forwards connections on `address` to `upstream` ("host:port") until `silence()`; from then on nothing
    passes either way, and every connection stays open."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self._silent = threading.Event()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def silence(self) -> None:
        self._silent.set()

    def close(self) -> None:
        self._stopping.set()
        self._listener.close()
        for connection in self._sockets:
            with contextlib.suppress(OSError):
                connection.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client = self._listener.accept()[0]
            except (TimeoutError, OSError):
                continue
            server = socket.create_connection(self._upstream)
            self._sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._forward, args=(source, target), daemon=True).start()

    def _forward(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not self._silent.is_set():
                    target.sendall(data)
