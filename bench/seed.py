"""Timelines written straight through the project's write path (decode, plan, apply), without Kafka.

For figures that measure reads or storage, where how the events arrived is not the point.
"""

import redis

from bench.workload import Workload, per_citizen
from context.service import plan_write
from context.settings import RedisSettings, TimelineSettings, redis_client_options
from context.store import ProjectionWriter
from events.codec import decode_stored
from models.events import STRUCTURED_CONTENT_TYPE

BATCH = 500


def seed(key_prefix: str, citizens: int, per: int) -> tuple[int, int]:
    """`per` events for each of `citizens` citizens under `key_prefix`; (events, bytes of their JSON)."""
    settings = RedisSettings(key_prefix=key_prefix)
    client = redis.Redis.from_url(str(settings.url), **redis_client_options())
    writer = ProjectionWriter(client, prefix=key_prefix, timeline=TimelineSettings())
    headers = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]
    count = size = 0
    batch = []
    try:
        epoch = writer.current_epoch()
        for _key, value in per_citizen(Workload(citizens=citizens), per):
            event, stored = decode_stored(value, headers)
            batch.append(plan_write(event, default_region="GB", stored=stored))
            count += 1
            # The size as stored: the event's compact JSON form, which is also what the API serves.
            size += len(stored)
            if len(batch) >= BATCH:
                writer.apply_batch(batch, epoch=epoch, publish=False)
                batch = []
        if batch:
            writer.apply_batch(batch, epoch=epoch, publish=False)
    finally:
        client.close()
    return count, size
