"""Commands sent to Redis group by group, their replies read after the last, against the real Redis."""

from collections.abc import Iterator

import pytest
import redis
from redis.commands.core import Script

from context.streamed import Command, StreamedCommands, evalsha

COUNT_CALLS = "return redis.call('INCR', KEYS[1])"


def counting(redis_client: "redis.Redis") -> tuple[Script, StreamedCommands]:
    """A script that counts its calls, loaded in Redis, and streamed commands that know it."""
    script = redis_client.register_script(COUNT_CALLS)
    redis_client.script_load(COUNT_CALLS)
    return script, StreamedCommands(redis_client, [script])


def test_replies_come_back_in_order_across_groups(redis_client: "redis.Redis", key_prefix: str) -> None:
    script = redis_client.register_script(COUNT_CALLS)
    streamed = StreamedCommands(redis_client, [script])

    def groups() -> Iterator[list[Command]]:
        yield [["SET", f"{key_prefix}:a", "1"], ["GET", f"{key_prefix}:a"]]
        yield []
        yield [evalsha(script, [f"{key_prefix}:n"], []), evalsha(script, [f"{key_prefix}:n"], [])]

    redis_client.script_load(COUNT_CALLS)
    assert streamed.execute(groups()) == ["OK", "1", 1, 2]  # raw replies, as Redis sends them


def test_an_error_reply_is_raised_after_every_reply_is_read(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    streamed = StreamedCommands(redis_client, [])
    redis_client.set(f"{key_prefix}:text", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        streamed.execute([[["LPUSH", f"{key_prefix}:text", "y"], ["SET", f"{key_prefix}:after", "2"]]])
    # The command after the error ran, as in a pipeline without a transaction, and the connection is in
    # step: the next run reads its own replies.
    assert redis_client.get(f"{key_prefix}:after") == "2"
    assert streamed.execute([[["GET", f"{key_prefix}:after"]]]) == ["2"]


def test_a_script_redis_lost_is_loaded_and_the_run_sent_again(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    script = redis_client.register_script(COUNT_CALLS)
    streamed = StreamedCommands(redis_client, [script])
    redis_client.script_flush()
    replies = streamed.execute(iter([[evalsha(script, [f"{key_prefix}:n"], [])]]))
    # The first sending failed with NOSCRIPT (nothing ran), the second ran once.
    assert replies == [1]
    assert redis_client.get(f"{key_prefix}:n") == "1"


def test_a_run_whose_connection_was_lost_is_sent_again_on_a_new_one(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    script, streamed = counting(redis_client)
    redis_client.client_setname(f"{key_prefix}-victim")
    victim = next(c for c in redis_client.client_list() if c["name"] == f"{key_prefix}-victim")

    def groups() -> Iterator[list[Command]]:
        yield [["SET", f"{key_prefix}:a", "1"]]
        redis_client.client_kill_filter(_id=victim["id"])  # the run's connection, after its first group
        yield [evalsha(script, [f"{key_prefix}:n"], [])]
        yield [["GET", f"{key_prefix}:a"]]

    assert streamed.execute(groups()) == ["OK", 1, "1"]
    # Whatever of the first sending ran before the connection went, the second ran whole.
    assert redis_client.get(f"{key_prefix}:n") in {"1", "2"}
    assert victim["id"] not in {c["id"] for c in redis_client.client_list()}


def test_replies_can_be_read_after_other_commands_ran_meanwhile(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    script, streamed = counting(redis_client)
    sent = streamed.send([[evalsha(script, [f"{key_prefix}:n"], [])], [["GET", f"{key_prefix}:n"]]])
    # Until its replies are read, the run holds its connection: other commands go on another one.
    assert redis_client.incr(f"{key_prefix}:other") == 1
    assert sent.replies() == [1, "1"]
    assert streamed.execute([[["GET", f"{key_prefix}:n"]]]) == ["1"]


def test_a_run_whose_connection_is_lost_before_its_replies_are_read_is_sent_again(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    script, streamed = counting(redis_client)
    name = f"{key_prefix}-run"
    sent = streamed.send([[["CLIENT", "SETNAME", name], evalsha(script, [f"{key_prefix}:n"], [])]])
    first = next(c["id"] for c in redis_client.client_list() if c["name"] == name)
    assert sent.connection is not None
    sent.connection.disconnect()  # lost before a reply was read
    replies = sent.replies()
    # Sent again on another connection; whatever of the first sending ran, the second ran whole.
    again = [c["id"] for c in redis_client.client_list() if c["name"] == name]
    assert again
    assert first not in again
    assert replies[0] == "OK"
    assert replies[1] in {1, 2}
    assert redis_client.get(f"{key_prefix}:n") == str(replies[1])


def test_a_run_sent_again_to_a_redis_that_lost_its_scripts_loads_them(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    script, streamed = counting(redis_client)
    sent = streamed.send([[["PING"]], [evalsha(script, [f"{key_prefix}:n"], [])]])
    assert sent.replies() == ["PONG", 1]
    # As after a restart: the connection is gone and so are the scripts, found only when sent again.
    sent = streamed.send([[evalsha(script, [f"{key_prefix}:n"], [])]])
    assert sent.connection is not None
    sent.connection.disconnect()
    redis_client.script_flush()
    assert sent.replies() in ([2], [3])
