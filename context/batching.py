"""Redis commands issued at about the same moment, sent together as one pipeline ("auto-pipelining").

Every context read makes two Redis calls of its own (its rate limit, its snapshot). With redis-py's asyncio
client one call costs the API well over 100 us of CPU however little Redis does for it: taking a pooled
connection, a write, a read, waking the waiting task. In a pipeline the same command costs a fifth of
that. Reads arriving together (64 desktops at once, or a burst) are the common case under load, so the
commands that callers issue while a pipeline is on its way are collected and go out together as the next
one, in the order they were issued. Alone, a command still goes at once: batching never waits for company.

The batches go out on one connection the batcher keeps, written and read directly rather than through
redis-py's pipeline object: at a steady 1,000 reads/s most batches hold a single command, and the
pipeline's own machinery (a connection taken from the pool and given back, its retry wrapper, its
command stack) cost about 35 us of the API's CPU per batch on top of the write and the read. Each command
is packed into the protocol by hiredis (in C) as it is issued: redis-py's asyncio connection packs in
Python, and that was a tenth of the event loop's time per context read at 64 connections.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.connection import Connection
from redis.commands.core import AsyncScript

from context.packing import pack_command

# The most commands one pipeline carries; more wait for the next one.
MAX_BATCH = 512
# The most commands waiting at once. Past it Redis is not keeping up (down, or far too slow): a caller is
# refused at once, as a command that found no connection would be, rather than joining a queue that grows
# without bound while Redis is away.
MAX_WAITING = 10_000


@dataclass(frozen=True, slots=True)
class _Command:
    name: str  # how the client reads its reply (its reply callbacks: SET gives True, ...)
    packed: bytes  # the command in the Redis protocol
    done: "asyncio.Future[Any]"


class CommandBatcher:
    """Runs commands on one client, batching those issued while a batch is in flight."""

    def __init__(self, client: "aioredis.Redis") -> None:
        self._client = client
        self._pending: list[_Command] = []
        self._sender: asyncio.Task[None] | None = None
        # Taken from the client's pool once and never given back: closing the client closes it too.
        self._connection: Connection | None = None
        self._deadline_s: float | None = None  # for a batch's round trip: the client's socket timeout

    async def execute(self, *args: Any) -> Any:
        """Run one command (`"GET", key`), batched with others issued meanwhile; its reply or its error."""
        if len(self._pending) >= MAX_WAITING:
            raise redis.exceptions.ConnectionError(f"Redis is not keeping up: {MAX_WAITING} commands wait")
        # An argument Redis cannot take (None, a bool) raises here: this caller's error alone, and nothing
        # of it joins a batch.
        packed = pack_command(args)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Command(str(args[0]), packed, done))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_pending(), name="redis-batcher")
        # A caller that goes away (a client disconnecting) cancels only its own future, never the batch.
        return await done

    async def run_script(self, script: AsyncScript, *, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a registered Lua script by its digest; loaded first if Redis lost it (a restart)."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            await self._client.script_load(script.script)
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)

    async def _send_pending(self) -> None:
        """Send every waiting command, a pipeline at a time, until none waits (then the task ends)."""
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            # A caller that went away meanwhile (its client disconnected) needs nothing sent for it: a rate
            # limit taken for nobody would count against the caller when it comes back.
            batch = [command for command in batch if not command.done.done()]
            if not batch:
                continue
            try:
                replies = await self._round_trip(batch)
            except Exception as error:
                # The batch never completed: every command of it fails alike. If Redis is unreachable,
                # so are the commands still waiting: they fail now rather than one pipeline at a time.
                failed = batch
                if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
                    failed, self._pending = batch + self._pending, []
                for command in failed:
                    if not command.done.done():
                        command.done.set_exception(_own_copy(error))
                continue
            for command, reply in zip(batch, replies, strict=True):
                if command.done.done():
                    continue
                if isinstance(reply, Exception):
                    command.done.set_exception(reply)
                else:
                    command.done.set_result(reply)

    async def _round_trip(self, commands: list[_Command]) -> list[Any]:
        """Send the commands in one write and read every reply, in order; an error reply is that reply."""
        try:
            return await self._send_and_read(commands)
        except redis.exceptions.ConnectionError:
            # The kept connection was lost since the last batch (Redis restarted, a network reset): the
            # batch is sent once more on a new one, as redis-py's own pipelines retry.
            return await self._send_and_read(commands)

    async def _send_and_read(self, commands: list[_Command]) -> list[Any]:
        if self._connection is None:
            # redis-py leaves the pool's method unannotated.
            connection = await self._client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            # The client's socket timeout becomes one deadline for a whole batch (below) rather than
            # redis-py's own for every reply: a timer set and cancelled per reply was 7 % of the API's CPU
            # at 64 connections. The connection is this batcher's alone, so nothing else reads it.
            self._deadline_s = connection.socket_timeout
            connection.socket_timeout = None
            self._connection = connection
        connection = self._connection
        try:
            async with asyncio.timeout(self._deadline_s):
                # A connection lost earlier is connected again here.
                await connection.send_packed_command(
                    b"".join(command.packed for command in commands), check_health=False
                )
                replies: list[Any] = []
                for command in commands:
                    try:
                        # As the client answers the command (its reply callbacks: SET gives True, ...).
                        replies.append(await self._client.parse_response(connection, command.name))
                    except redis.exceptions.ResponseError as error:
                        replies.append(error)
            return replies
        except BaseException as error:
            # Replies left unread would be taken for the next batch's: the connection starts afresh.
            await connection.disconnect(nowait=True)
            if isinstance(error, TimeoutError):
                message = f"Redis did not answer within {self._deadline_s} s"
                raise redis.exceptions.TimeoutError(message) from error
            raise


def _own_copy(error: Exception) -> Exception:
    """The error again, as its own object: callers raising the same one would pile up one traceback."""
    try:
        copy = type(error)(*error.args)
    except Exception:
        return error
    copy.__cause__ = error
    return copy
