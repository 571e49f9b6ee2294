"""The order of an erasure's steps, against the real Kafka, Redis and SQL: the citizen's enquiries are gone
before the erasure's time is taken, so none can be completed after it."""

from collections.abc import Sequence

import redis.asyncio as aioredis
from sqlmodel import Session

from api.citizen_rights import erase_citizen
from api.publisher import EventPublisher
from api.security.audit import Auditor
from context.store import CitizenEraser
from events.settings import KafkaSettings
from models import enquiry_repository
from models.database import DatabaseSettings, create_db_engine
from models.events import CloudEvent
from tests.factories import ERASURES


class Watching(EventPublisher):
    """A publisher that notes how many of the citizen's enquiries SQL held when the erasure was recorded."""

    def __init__(self, kafka: KafkaSettings, settings: DatabaseSettings, citizen_id: str) -> None:
        super().__init__(kafka)
        self._engine = create_db_engine(settings)
        self._citizen_id = citizen_id
        self.enquiries_held: list[int] = []

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        with Session(self._engine) as session:
            held = enquiry_repository.citizen_enquiries(session, citizen_id=self._citizen_id)
        self.enquiries_held.append(len(held))
        await super().publish(events)


async def test_the_citizens_enquiries_are_gone_before_the_erasure_is_recorded(
    database_settings: DatabaseSettings, async_redis: "aioredis.Redis", key_prefix: str, kafka_topic: str
) -> None:
    # Deleted after it, an enquiry an agent completed meanwhile published its completion, notes and all,
    # timed after the erasure: applied, and kept by every replay.
    engine = create_db_engine(database_settings)
    with Session(engine) as session:
        enquiry_repository.create_enquiry(session, agent_id="A-1", citizen_id="C-ORDER", channel="phone")
    publisher = Watching(KafkaSettings(topic=kafka_topic), database_settings, "C-ORDER")
    auditor = Auditor(engine, pseudonym_key="k" * 32)
    try:
        receipt = await erase_citizen(
            "C-ORDER",
            publisher=publisher,
            eraser=CitizenEraser(async_redis, prefix=key_prefix),
            engine=engine,
            auditor=auditor,
            signer=ERASURES,
        )
    finally:
        publisher.close()
    assert publisher.enquiries_held == [0]
    assert receipt.enquiries_removed == 1
