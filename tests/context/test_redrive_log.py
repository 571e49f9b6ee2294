"""The redrive log, against the real Redis: it knows what was redriven for as long as the topics hold it, and
forgets it after, so it never grows beyond what the topics hold."""

from datetime import timedelta

import redis

from context.keys import (
    legacy_redrive_counts_key,
    legacy_redriven_key,
    redrive_counts_key,
    redrive_landings_key,
    redriven_key,
)
from context.store import RedriveLog

RETENTION = timedelta(days=91)
DAY_S = 24 * 3600.0


class Clock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def log_at(client: redis.Redis, prefix: str, clock: Clock, retention: timedelta = RETENTION) -> RedriveLog:
    return RedriveLog(client, prefix=prefix, retention=retention, clock=clock)


def test_a_redriven_letter_is_known_while_its_topic_may_hold_it_then_forgotten(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    clock = Clock()
    log = log_at(redis_client, key_prefix, clock)
    log.mark(["dlq/0/1/t1"], landed={"topic[0]@7 aa": 1})
    assert log.redriven(["dlq/0/1/t1", "dlq/0/2/t2"]) == {"dlq/0/1/t1"}

    clock.now += RETENTION.total_seconds() - 1
    assert log.redriven(["dlq/0/1/t1"]) == {"dlq/0/1/t1"}
    clock.now += 2
    # Its letter is gone from the dead-letter topic by now: nothing is left to tell apart.
    assert log.redriven(["dlq/0/1/t1"]) == set()

    # The next redrive prunes it: the log holds only what the topics may still hold.
    log.mark(["dlq/0/2/t2"], landed={"topic[0]@8 bb": 1})
    assert redis_client.zrange(redriven_key(key_prefix), 0, -1) == ["dlq/0/2/t2"]
    assert 0 < redis_client.ttl(redriven_key(key_prefix)) <= RETENTION.total_seconds()


def test_a_landing_is_kept_as_long_as_a_letter_made_of_it_may_be_and_its_count_with_it(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    clock = Clock()
    log = log_at(redis_client, key_prefix, clock)
    log.mark(["dlq/0/1/t1"], landed={"topic[0]@7 aa": 1})
    # Dead-lettered again, and redriven again: the earlier landing stays, so its letter still shows
    # how many redrives it came back after.
    clock.now += DAY_S
    log.mark(["dlq/0/2/t2"], landed={"topic[0]@9 cc": 2})
    assert log.redrives_behind(["topic[0]@7 aa", "topic[0]@9 cc", "topic[0]@5 zz"]) == {
        "topic[0]@7 aa": 1,
        "topic[0]@9 cc": 2,
    }

    # The record stays in its topic for the retention, and a letter made of it as long again.
    clock.now += 2 * RETENTION.total_seconds() - DAY_S - 1
    assert log.redrives_behind(["topic[0]@7 aa"]) == {"topic[0]@7 aa": 1}
    clock.now += 2
    assert log.redrives_behind(["topic[0]@7 aa", "topic[0]@9 cc"]) == {"topic[0]@9 cc": 2}

    log.mark(["dlq/0/3/t3"], landed={"topic[0]@11 dd": 3})
    landings = redis_client.zrange(redrive_landings_key(key_prefix), 0, -1)
    assert sorted(landings) == ["topic[0]@11 dd", "topic[0]@9 cc"]
    counts = redis_client.hgetall(redrive_counts_key(key_prefix))
    assert counts == {"topic[0]@9 cc": "2", "topic[0]@11 dd": "3"}


def test_an_age_cap_raised_since_keeps_earlier_entries_for_as_long_as_the_topics_now_keep_letters(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # Scored by when it would end, a letter redriven under the lower cap showed as pending, and was
    # redriven again, while the topics still held it.
    clock = Clock()
    log_at(redis_client, key_prefix, clock).mark(["dlq/0/1/t1"], landed={"topic[0]@7 aa": 1})
    clock.now += RETENTION.total_seconds() + DAY_S
    raised = log_at(redis_client, key_prefix, clock, retention=2 * RETENTION)
    assert raised.redriven(["dlq/0/1/t1"]) == {"dlq/0/1/t1"}
    assert raised.redrives_behind(["topic[0]@7 aa"]) == {"topic[0]@7 aa": 1}


def test_a_key_outlives_its_latest_entry_whichever_retention_wrote_it(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    clock = Clock()
    log_at(redis_client, key_prefix, clock, retention=2 * RETENTION).mark(["dlq/0/1/t1"], landed={"a": 1})
    log_at(redis_client, key_prefix, clock).mark(["dlq/0/2/t2"], landed={"b": 1})
    # A process with a shorter retention does not cut short what another one's entries need.
    assert redis_client.ttl(redriven_key(key_prefix)) > RETENTION.total_seconds()
    assert redis_client.ttl(redrive_landings_key(key_prefix)) > 2 * RETENTION.total_seconds()
    assert redis_client.ttl(redrive_counts_key(key_prefix)) > 2 * RETENTION.total_seconds()


def test_what_an_earlier_version_redrove_is_still_known_and_its_keys_end_with_their_letters(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # Earlier versions kept a set and a hash for a year after the latest redrive.
    year_s = 365 * DAY_S
    redis_client.sadd(legacy_redriven_key(key_prefix), "dlq/0/1/t1")
    redis_client.expire(legacy_redriven_key(key_prefix), int(year_s))
    redis_client.hset(legacy_redrive_counts_key(key_prefix), "topic[0]@7 aa", 2)
    redis_client.expire(legacy_redrive_counts_key(key_prefix), int(year_s))
    log = log_at(redis_client, key_prefix, Clock())
    assert log.redriven(["dlq/0/1/t1", "dlq/0/2/t2"]) == {"dlq/0/1/t1"}
    assert log.redrives_behind(["topic[0]@7 aa", "topic[0]@8 bb"]) == {"topic[0]@7 aa": 2}

    log.mark(["dlq/0/2/t2"], landed={"topic[0]@9 cc": 3})
    assert 0 < redis_client.ttl(legacy_redriven_key(key_prefix)) <= RETENTION.total_seconds()
    assert 0 < redis_client.ttl(legacy_redrive_counts_key(key_prefix)) <= 2 * RETENTION.total_seconds()
