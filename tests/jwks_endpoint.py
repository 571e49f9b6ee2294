"""An identity provider's key-set (JWKS) endpoint on loopback: a real HTTP server on a thread of its own."""

import socket
import struct
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# What one fetch is answered with: a status and a JSON body, or None to cut the connection unanswered.
Answer = tuple[int, bytes] | None


class JwksEndpoint:
    """Serves `answer()` to every fetch of its `url`, until closed."""

    def __init__(self, answer: Callable[[], Answer]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answered = answer()
                if answered is None:
                    # Linger with a zero timeout: the close sends a reset, not an orderly end.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    return
                status, body = answered
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/certs"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
