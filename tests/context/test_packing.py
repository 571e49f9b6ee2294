"""Commands packed by hiredis directly, as redis-py's own packer sends them (pure)."""

from typing import Any

import pytest
import redis.exceptions
from redis.connection import HiredisRespSerializer

from context.packing import pack_command

COMMANDS: list[tuple[Any, ...]] = [
    ("RPUSH", "key", "Zoë 🙂", b"raw\x00bytes", 42, -7, 2**70, 0.1, 1e20),
    ("RPUSH", b"key", bytearray(b"from a bytearray"), memoryview(b"from a memoryview")),
    ("CONFIG GET", "appendonly"),
    (b"CONFIG GET", b"appendonly"),
    ("EVALSHA", "0" * 40, 2, "k1", "k2", "", "1.0"),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_is_packed_as_redis_py_packs_it(command: tuple[Any, ...]) -> None:
    assert pack_command(command) == b"".join(HiredisRespSerializer().pack(*command))
    # A list of arguments (the write path's commands) packs the same as a tuple.
    assert pack_command(list(command)) == pack_command(command)


@pytest.mark.parametrize("bad", [None, True])
def test_an_argument_redis_cannot_take_is_refused_naming_the_command_not_the_value(bad: object) -> None:
    with pytest.raises(redis.exceptions.DataError) as refused:
        pack_command(("SET", "secret-key-name", bad))
    assert str(refused.value).startswith("SET: ")
    assert "secret-key-name" not in str(refused.value)
