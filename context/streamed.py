"""Commands sent to Redis as soon as they are built, their replies read after the last (synchronous).

A redis-py pipeline packs every command of a batch before it sends the first, so Redis waits while the
writer packs, and the writer waits while Redis runs the scripts. Sent a group at a time on one connection,
the first scripts run while the next are still being packed (by hiredis directly, context/packing.py).
Replies come back in order, as with a pipeline; nothing is wrapped in a transaction.
"""

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError, ResponseError

from context.packing import pack_command

Command = Sequence[str | int | bytes]


class StreamedCommands:
    """Sends groups of commands on one connection as they come and returns every reply, in order.

    An error reply becomes the result of its own command (the others still run, as in a pipeline without
    a transaction); `execute` raises the first one after reading every reply, so the connection stays in
    step. A script Redis does not hold (a restart, `SCRIPT FLUSH`) is loaded and the whole run is sent
    again, as is a run whose connection was lost: callers send only idempotent commands, which the write
    path's are.
    """

    def __init__(self, client: "redis.Redis", scripts: Iterable[Script]) -> None:
        self._client = client
        self._scripts = list(scripts)

    def execute(self, groups: Iterable[Sequence[Command]]) -> list[Any]:
        """Send each group as it is produced (one write each); the replies of every command, in order."""
        produced: list[Sequence[Command]] = []

        def kept(groups: Iterable[Sequence[Command]]) -> Iterator[Sequence[Command]]:
            for group in groups:
                produced.append(group)
                yield group

        feed = kept(groups)
        try:
            return self._run(feed)
        except NoScriptError:
            for script in self._scripts:
                self._client.script_load(script.script)
        except (redis.ConnectionError, redis.TimeoutError):
            # A connection lost mid-run (a reset, a restarting server): the run is sent once more on a new
            # connection, as redis-py's own pipelines retry; a second failure is the caller's to handle.
            pass
        for _group in feed:  # the groups not produced before the failure
            pass
        return self._run(produced)

    def _run(self, groups: Iterable[Sequence[Command]]) -> list[Any]:
        pool = self._client.connection_pool
        connection = pool.get_connection()
        try:
            sent = 0
            for group in groups:
                if group:
                    packed = b"".join(pack_command(command) for command in group)
                    # redis-py leaves this connection method unannotated.
                    connection.send_packed_command([packed], check_health=False)  # type: ignore[no-untyped-call]
                    sent += len(group)
            replies: list[Any] = []
            for _ in range(sent):
                try:
                    replies.append(connection.read_response())
                except ResponseError as error:
                    replies.append(error)
        except BaseException:
            # A reply left unread would be taken for the next command's: the connection cannot be reused.
            connection.disconnect()  # type: ignore[no-untyped-call]
            raise
        finally:
            pool.release(connection)
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies


def evalsha(script: Script, keys: Sequence[str], args: Sequence[str | int]) -> list[str | int]:
    """The EVALSHA command of `script` with its keys and arguments."""
    return ["EVALSHA", script.sha, len(keys), *keys, *args]
