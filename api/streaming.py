"""Live changes inside one API process: one Redis subscription, multiplexed to every open stream.

Each WebSocket gets a bounded queue. When a queue overflows (a slow client) or the subscription had to
reconnect (changes may have been published meanwhile), the stream is told to re-sync from a snapshot
instead of silently missing changes.
"""

import asyncio
import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import redis.asyncio as aioredis
import redis.exceptions
import structlog

from models.context import ContextChange

log = structlog.get_logger("streaming")


class Resync:
    """Marker: the stream can no longer trust its queue and must send a fresh snapshot."""


RESYNC: Final = Resync()
StreamItem = ContextChange | Resync


class Subscription:
    """One stream's view of the changes of one citizen."""

    def __init__(self, citizen_id: str, queue_size: int) -> None:
        self.citizen_id = citizen_id
        self._queue: asyncio.Queue[StreamItem] = asyncio.Queue(maxsize=queue_size)

    def offer(self, item: StreamItem) -> None:
        """Queue an item; when full, drop what is queued and ask for a re-sync (memory stays bounded)."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(RESYNC)

    async def get(self) -> StreamItem:
        """The next change, or RESYNC."""
        return await self._queue.get()


class ChangeHub:
    """Reads the changes channel and hands each change to the streams watching its citizen."""

    def __init__(self, client: "aioredis.Redis", *, channel: str, queue_size: int) -> None:
        self._client = client
        self._channel = channel
        self._queue_size = queue_size
        self._subscriptions: defaultdict[str, set[Subscription]] = defaultdict(set)
        self.connected = asyncio.Event()

    @contextmanager
    def subscribe(self, citizen_id: str) -> Iterator[Subscription]:
        """Receive the changes of `citizen_id` while the block runs."""
        subscription = Subscription(citizen_id, self._queue_size)
        self._subscriptions[citizen_id].add(subscription)
        try:
            yield subscription
        finally:
            watchers = self._subscriptions[citizen_id]
            watchers.discard(subscription)
            if not watchers:
                del self._subscriptions[citizen_id]

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff; every reconnect re-syncs every stream."""
        delay = 0.1
        first = True
        while True:
            try:
                async with self._client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    self.connected.set()
                    if not first:
                        log.info("changes subscription restored")
                        self._resync_all()
                    first = False
                    delay = 0.1
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._dispatch(message["data"])
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
                self.connected.clear()
                first = False
                # Changes published while disconnected are gone from pub/sub; streams must re-sync.
                self._resync_all()
                log.warning("changes subscription lost", error=str(error), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _dispatch(self, raw: str | bytes) -> None:
        message = json.loads(raw)
        citizen_id = message.get("citizen_id")
        if citizen_id is None and "epoch" in message:
            # A rebuild switched the served generation: every stream re-syncs from the new one.
            log.info("projection epoch changed", epoch=message["epoch"])
            self._resync_all()
            return
        watchers = self._subscriptions.get(citizen_id)
        if not watchers:
            return
        change = ContextChange.model_validate_json(raw)
        for subscription in list(watchers):
            subscription.offer(change)

    def _resync_all(self) -> None:
        for watchers in self._subscriptions.values():
            for subscription in watchers:
                subscription.offer(RESYNC)
