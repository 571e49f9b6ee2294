"""Live changes inside one API process: one Redis subscription, multiplexed to every open stream.

Each stream gets a bounded queue. When a queue overflows (a slow client), the subscription had to
reconnect (changes may have been published meanwhile) or a rebuild switched the epoch, the stream is
told to re-sync from a snapshot instead of silently missing changes.
"""

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Literal

import redis.asyncio as aioredis
import redis.exceptions
import structlog
from redis.asyncio.client import PubSub

from api.metrics import UNREADABLE_MESSAGES
from context.store import change_of, published_change
from models.context import ContextChange

log = structlog.get_logger("streaming")

ResyncReason = Literal["overflow", "redis", "epoch", "unreadable"]


@dataclass(frozen=True)
class Resync:
    """The stream can no longer trust its queue and must send a fresh snapshot."""

    reason: ResyncReason


class PresenceChanged:
    """Someone started or stopped viewing this citizen."""


class ShuttingDown:
    """This process is shutting down: tell the client to reconnect elsewhere, then close."""


class Heartbeat:
    """Time for the stream's heartbeat (one timer for the whole process hands these out)."""


class LifetimeOver:
    """The stream has lived its maximum lifetime: tell the client to reconnect, then close."""


class Erased:
    """The citizen's data was erased: there is nothing left to show."""


@dataclass(frozen=True)
class AccessEnded:
    """The stream's access lapsed (enquiry ended, credential expired or revoked): close with `code`."""

    code: int
    reason: str


PRESENCE_CHANGED: Final = PresenceChanged()
SHUTTING_DOWN: Final = ShuttingDown()
HEARTBEAT: Final = Heartbeat()
LIFETIME_OVER: Final = LifetimeOver()
ERASED: Final = Erased()
StreamItem = (
    ContextChange | Resync | PresenceChanged | ShuttingDown | Erased | AccessEnded | Heartbeat | LifetimeOver
)
FinalItem = ShuttingDown | Erased | AccessEnded | LifetimeOver


def _rank(item: FinalItem) -> int:
    """Which ending wins when several arrive: what the client must act on before a mere "reconnect".

    An erasure or a lapsed access must reach the client with its own close code: replaced by a shutdown's
    or the lifetime's "reconnect", the client would come back (to an empty context, or without access).
    """
    match item:
        case Erased() | AccessEnded():
            return 2
        case ShuttingDown():
            return 1
        case _:
            return 0


# Changes dispatched in one go before the hub lets other tasks run.
DRAIN_AT_ONCE = 500

# Streams handed their heartbeat at once: the work of one interval is spread in slices of this many.
HEARTBEAT_SLICE = 250


class Subscription:
    """One stream's view of the changes of one citizen."""

    def __init__(self, citizen_id: str, queue_size: int) -> None:
        self.citizen_id = citizen_id
        self._queue: asyncio.Queue[StreamItem] = asyncio.Queue(maxsize=queue_size)
        self._final: FinalItem | None = None

    def beat(self) -> None:
        """Ask for a heartbeat, unless items are waiting: the stream is about to hear from us anyway."""
        if self._queue.empty():
            self._queue.put_nowait(HEARTBEAT)

    def offer(self, item: StreamItem) -> None:
        """Queue an item; when full, drop what is queued and ask for a re-sync (memory stays bounded)."""
        # An ending is sticky: whatever happens to the queue afterwards, the next `get` returns it, unless
        # an ending that matters more to the client arrives first.
        if isinstance(item, FinalItem) and (self._final is None or _rank(item) > _rank(self._final)):
            self._final = item
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(Resync("overflow"))

    async def next(self) -> StreamItem:
        """The next item, waiting as long as it takes (heartbeats and the lifetime arrive as items)."""
        if self._final is not None:
            return self._final
        if not self._queue.empty():
            return self._queue.get_nowait()
        # No timer per wait: with thousands of streams, one timeout per stream and wake-up was a large
        # share of the event loop's time.
        item = await self._queue.get()
        return self._final if self._final is not None else item

    async def get(self, wait_s: float) -> StreamItem | None:
        """The next item, or None when `wait_s` seconds pass without one."""
        if self._final is not None:
            return self._final
        if not self._queue.empty():
            # Without a timer (and also when `wait_s` is 0, where `wait_for` would give up unasked).
            return self._queue.get_nowait()
        try:
            return await asyncio.wait_for(self._queue.get(), timeout=max(wait_s, 0))
        except TimeoutError:
            return None


def stop_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop, for a loop that would otherwise go on.

    A cancellation can be lost inside a client library. redis-py reads a subscription under a timeout,
    and on Python 3.11 a cancel that lands as the timeout fires comes out as that timeout (redis-py then
    answers "no message"); it can also turn a cancelled read into a ConnectionError, which a loop that
    retries on errors catches. The task still counts the request (`Task.cancelling`), so a loop that
    checks it on every turn ends as asked. Without it, cancelling the change hub while it listened with a
    short probe left it running within a few dozen tries, and a test's app teardown, which waits for every
    task it cancels, hung for good.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class ChangeHub:
    """Reads the changes channel and hands each message to the streams watching its citizen."""

    def __init__(
        self,
        client: "aioredis.Redis",
        *,
        channel: str,
        queue_size: int,
        probe_s: float = 10,
        on_resync_all: Callable[[], None] = lambda: None,
        forget_citizen: Callable[[str], None] = lambda _citizen_id: None,
    ) -> None:
        self._client = client
        # Called before every stream is told to re-sync (a new epoch, or a subscription restored after
        # messages may have been lost): whoever keeps the epoch at hand must read it again.
        self._on_resync_all = on_resync_all
        # Called for every erased citizen, watched or not, and for one a change about which could not be
        # read: whoever keeps their data at hand must drop it.
        self._forget_citizen = forget_citizen
        self._probe_s = probe_s
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

    def offer(self, citizen_id: str, item: StreamItem) -> None:
        """Hand `item` to every stream of `citizen_id` in this process."""
        for subscription in list(self._subscriptions.get(citizen_id, ())):
            subscription.offer(item)

    async def run_heartbeats(self, interval_s: float) -> None:
        """Hand every stream its heartbeat once per interval, in slices spread over it, until cancelled."""
        while True:
            started = time.monotonic()
            subscriptions = [s for watchers in list(self._subscriptions.values()) for s in watchers]
            slices = max((len(subscriptions) + HEARTBEAT_SLICE - 1) // HEARTBEAT_SLICE, 1)
            for index in range(slices):
                for subscription in subscriptions[index * HEARTBEAT_SLICE : (index + 1) * HEARTBEAT_SLICE]:
                    subscription.beat()
                await asyncio.sleep(interval_s / slices)
            await asyncio.sleep(max(interval_s - (time.monotonic() - started), 0))

    def shut_down_streams(self) -> None:
        """Tell every stream of this process to send "reconnect" and close."""
        self._offer_all(SHUTTING_DOWN)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff; every (re)subscription re-syncs every stream."""
        delay = 0.1
        while True:
            try:
                # Subscription replies are kept, and any message counts as hearing from Redis. With RESP3 and
                # decoded responses, redis-py takes the answer to a ping for a subscription reply and drops
                # it when told to ignore those: every quiet subscription then looked dead after three
                # probes and was replaced, re-syncing every stream, every 30 s. Only changes are dispatched.
                async with self._client.pubsub(ignore_subscribe_messages=False) as pubsub:
                    await pubsub.subscribe(self._channel)
                    self.connected.set()
                    # Also the first time: a stream opened before this subscription took its snapshot
                    # without one, and changes published meanwhile reached nobody.
                    self._resync_all("redis")
                    log.info("changes subscription ready")
                    delay = 0.1
                    await self._listen(pubsub)
            except Exception as error:
                stop_if_cancelled()  # a cancelled read, surfaced as an error (see stop_if_cancelled)
                # Changes published from now until the subscription is back are lost to pub/sub: every
                # stream re-syncs once it is restored (a snapshot read now would fail with Redis down).
                # Meanwhile heartbeats tell clients that live updates are paused.
                self.connected.clear()
                log.warning("changes subscription lost", error=type(error).__name__, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _listen(self, pubsub: PubSub) -> None:
        """Dispatch messages; ping the server, and give up on a subscription that stops answering.

        A connection dropped silently (an idle timeout in a firewall or a load balancer) would otherwise
        leave the hub waiting forever while streams believe they are live.
        """
        last_heard = time.monotonic()
        next_ping = last_heard + self._probe_s
        while True:
            message = await pubsub.get_message(timeout=min(1.0, self._probe_s))
            stop_if_cancelled()  # a cancel lost to the read's timeout (see stop_if_cancelled)
            now = time.monotonic()
            drained = 0
            while message is not None:
                last_heard = now  # any message: a change, the answer to a ping, a subscription's reply
                if message["type"] == "message":
                    self._dispatch(message["data"])
                # Take every message already received before waiting again: one message per turn of a
                # busy event loop (thousands of streams) fell behind 200 changes a second.
                drained += 1
                message = await pubsub.get_message(timeout=0) if drained < DRAIN_AT_ONCE else None
            if now >= next_ping:
                await pubsub.ping()
                next_ping = now + self._probe_s
            if now - last_heard > 3 * self._probe_s:
                raise redis.exceptions.ConnectionError("the changes subscription stopped answering")

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            self._route(raw)
        except Exception as error:
            UNREADABLE_MESSAGES.inc()
            log.warning("unreadable change message", error=type(error).__name__)
            citizen_id = _citizen_of(raw)
            if citizen_id is not None:
                # A change of this citizen may have been lost with it: their streams re-sync, and nobody
                # else's (each change names its citizen: re-syncing every stream of the process for one
                # message cost a snapshot per stream, on every such message).
                self._forget_citizen(citizen_id)
                self.offer(citizen_id, Resync("unreadable"))
            # A message naming no citizen is none of the changes the projection publishes (each names its
            # citizen, or the new generation): nothing was missed.

    def _route(self, raw: str | bytes) -> None:
        # Only the message's JSON is read here; a change's event only for a citizen someone watches.
        message, stored_event = published_change(raw)
        citizen_id = message.get("citizen_id")
        if citizen_id is None:
            if "epoch" in message:
                # A rebuild switched the served generation: every stream re-syncs from the new one.
                log.info("projection epoch changed", epoch=message["epoch"])
                self._resync_all("epoch")
            return
        if message.get("erased"):
            self._forget_citizen(citizen_id)
        watchers = self._subscriptions.get(citizen_id)
        if not watchers:
            return
        item: StreamItem
        if message.get("presence"):
            item = PRESENCE_CHANGED
        elif message.get("erased"):
            item = ERASED
        else:
            item = change_of(message, stored_event)
        self.offer(citizen_id, item)

    def _resync_all(self, reason: ResyncReason) -> None:
        self._on_resync_all()
        self._offer_all(Resync(reason))

    def _offer_all(self, item: StreamItem) -> None:
        for watchers in self._subscriptions.values():
            for subscription in watchers:
                subscription.offer(item)


def _citizen_of(raw: str | bytes) -> str | None:
    """The citizen a message of the changes channel names, if it can be read that far (pure)."""
    try:
        message, _ = published_change(raw)
    except ValueError:  # not JSON (or not UTF-8)
        return None
    citizen_id = message.get("citizen_id") if isinstance(message, dict) else None
    return citizen_id if isinstance(citizen_id, str) and citizen_id else None
