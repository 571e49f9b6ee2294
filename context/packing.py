"""Redis commands packed into the protocol by hiredis (in C), for the two places that write to a connection
directly: the API's command batcher (context/batching.py) and the write path's streamed commands
(context/streamed.py).

redis-py's own packer checks and converts every argument in Python before hiredis packs them: on the
write path, where one script call carries a few hundred arguments, that check cost the consumer about a
microsecond per event.
"""

from collections.abc import Sequence
from typing import Any

import hiredis
import redis.exceptions


def pack_command(args: Sequence[Any]) -> bytes:
    """The command in the Redis protocol, as redis-py's own hiredis packer sends it: a command name of
    several words ("CONFIG GET") as those words, a bytearray or memoryview as its bytes. Raises redis-py's
    DataError for an argument Redis cannot take (None, a bool), as redis-py's own packer does."""
    try:
        return _packed(tuple(args))
    except TypeError as error:
        # As redis-py refuses an argument it cannot send: the message names the command only, never its
        # arguments (they may hold personal data).
        raise redis.exceptions.DataError(f"{args[0]}: {error}") from None


def _packed(args: tuple[Any, ...]) -> bytes:
    name = args[0]
    if (isinstance(name, str) and " " in name) or (isinstance(name, bytes) and b" " in name):
        args = (*name.split(), *args[1:])
    try:
        packed: bytes = hiredis.pack_command(args)
    except TypeError:
        # hiredis takes neither a bytearray nor every memoryview; they are converted only when met, as the
        # check on every argument of every command would cost more than packing it.
        args = tuple(bytes(arg) if isinstance(arg, bytearray | memoryview) else arg for arg in args)
        packed = hiredis.pack_command(args)
    return packed
