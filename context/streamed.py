"""Commands sent to Redis as soon as they are built, their replies read after the last, or later.

A redis-py pipeline packs every command of a batch before it sends the first, so Redis waits while the
writer packs, and the writer waits while Redis runs the scripts. Sent a group at a time on one connection,
the first scripts run while the next are still being packed (by hiredis directly, context/packing.py).
Replies come back in order, as with a pipeline; nothing is wrapped in a transaction.

The replies can also be read later (`send`, then `Sent.replies`): the consumer sends one batch, prepares
the next while Redis runs the first, and only then reads the first's replies, all there by then. One
thread does both, so no second thread waits for the interpreter lock at every socket read.
"""

from collections.abc import Iterable, Sequence
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
        return self.send(groups).replies()

    def send(self, groups: Iterable[Sequence[Command]]) -> "Sent":
        """Send each group as it is produced; the replies are read by `Sent.replies()`, which must follow
        (the connection is held until then)."""
        produced: list[Sequence[Command]] = []
        feed = iter(groups)
        connection = self._client.connection_pool.get_connection()
        sent = 0
        try:
            for group in feed:
                produced.append(group)
                if group:
                    packed = b"".join(pack_command(command) for command in group)
                    # redis-py leaves this connection method unannotated.
                    connection.send_packed_command([packed], check_health=False)  # type: ignore[no-untyped-call]
                    sent += len(group)
        except (redis.ConnectionError, redis.TimeoutError):
            # A connection lost mid-run (a reset, a restarting server): `replies` sends the run once more
            # on a new connection, as redis-py's own pipelines retry. The groups not produced yet are
            # needed for that.
            self._release(connection, broken=True)
            produced.extend(feed)
            return Sent(self, produced, None, 0)
        except BaseException:
            self._release(connection, broken=True)
            raise
        return Sent(self, produced, connection, sent)

    def _read(self, connection: Any, sent: int) -> list[Any]:
        """Read `sent` replies, then give the connection back; raise the first error reply, if any."""
        replies: list[Any] = []
        try:
            for _ in range(sent):
                try:
                    replies.append(connection.read_response())
                except ResponseError as error:
                    replies.append(error)
        except BaseException:
            self._release(connection, broken=True)
            raise
        self._release(connection, broken=False)
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies

    def _release(self, connection: Any, *, broken: bool) -> None:
        if broken:
            # A reply left unread would be taken for the next command's: the connection cannot be reused.
            connection.disconnect()
        self._client.connection_pool.release(connection)

    def _resend(self, produced: list[Sequence[Command]], *, load_scripts: bool) -> list[Any]:
        """Send the run again on a new connection. A Redis that restarted meanwhile has lost the scripts:
        they are loaded and the run is sent once more."""
        if load_scripts:
            self._load_scripts()
        try:
            return self._send_and_read(produced)
        except NoScriptError:
            if load_scripts:
                raise
            self._load_scripts()
            return self._send_and_read(produced)

    def _send_and_read(self, produced: list[Sequence[Command]]) -> list[Any]:
        again = self.send(produced)
        if again.connection is None:
            raise redis.ConnectionError("the connection to Redis was lost twice while sending commands")
        return self._read(again.connection, again.count)

    def _load_scripts(self) -> None:
        for script in self._scripts:
            self._client.script_load(script.script)


class Sent:
    """Commands sent on a connection whose replies are still to be read."""

    def __init__(
        self, owner: StreamedCommands, produced: list[Sequence[Command]], connection: Any, count: int
    ) -> None:
        self._owner = owner
        self._produced = produced
        # None when sending failed: the run is sent again when the replies are asked for.
        self.connection = connection
        self.count = count

    def replies(self) -> list[Any]:
        """The replies of every command, in order (sending the run again, once, after a lost script or
        connection); raises the first error reply, after reading them all."""
        if self.connection is None:
            return self._owner._resend(self._produced, load_scripts=False)
        connection, self.connection = self.connection, None
        try:
            return self._owner._read(connection, self.count)
        except NoScriptError:
            return self._owner._resend(self._produced, load_scripts=True)
        except (redis.ConnectionError, redis.TimeoutError):
            return self._owner._resend(self._produced, load_scripts=False)


def evalsha(script: Script, keys: Sequence[str], args: Sequence[str | int]) -> list[str | int]:
    """The EVALSHA command of `script` with its keys and arguments."""
    return ["EVALSHA", script.sha, len(keys), *keys, *args]
