"""The API process's life: open streams are counted so that a shutdown can drain them first."""

import asyncio
import contextlib

from api.streaming import ChangeHub


class Lifecycle:
    """Knows the open streams; `drain` asks them to reconnect elsewhere and waits until they have."""

    def __init__(self) -> None:
        self.hub: ChangeHub | None = None
        self.draining = False
        self._open = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def stream_opened(self) -> None:
        """Count a stream in."""
        self._open += 1
        self._idle.clear()

    def stream_closed(self) -> None:
        """Count a stream out."""
        self._open -= 1
        if self._open <= 0:
            self._open = 0
            self._idle.set()

    @property
    def open_streams(self) -> int:
        """Streams open now."""
        return self._open

    async def drain(self, *, timeout_s: float = 5.0) -> None:
        """Send every stream "reconnect", then wait (at most `timeout_s`) until all have closed."""
        self.draining = True
        if self.hub is not None:
            self.hub.shut_down_streams()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)
