"""An erasure racing an event that teaches the citizen a new identifier, against the real Redis: no index
entry is left behind to bring the citizen back."""

from typing import Any

import redis
import redis.asyncio as aioredis

from context.identity import IdentifierKind
from context.keys import CitizenKeys
from context.settings import TimelineSettings
from context.store import CitizenEraser, ProjectionWriter
from tests.factories import example_data, make_event, writes_for

PHONE = (IdentifierKind.phone, "+447700900123")
EMAIL = (IdentifierKind.email, "anna.jones@example.org")


def taught(citizen: str, **identifiers: str) -> Any:
    """A profile update teaching the citizen these identifiers (phone, email)."""
    data = {"channel": "system", "summary": "Contact details", **identifiers}
    return writes_for(
        make_event(citizen, type_="profile.updated", data=example_data("profile.updated", **data))
    )


def test_an_identifier_taught_during_an_erasure_is_erased_too(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    epoch = writer.current_epoch()
    writer.apply_batch(taught("C-RACE", phone="07700 900123", email=None))  # type: ignore[arg-type]
    forget = writer._forget
    raced: list[bool] = []

    def forget_while_the_consumer_teaches(**kwargs: Any) -> Any:
        # Between the erasure's reading of the identifiers set and its deletion of the citizen, an event
        # teaching an email is applied (another process's batch, in production).
        if not raced:
            raced.append(True)
            writer.apply_batch(taught("C-RACE", phone="07700 900123", email="Anna.Jones@example.org"))
        return forget(**kwargs)

    writer._forget = forget_while_the_consumer_teaches  # type: ignore[assignment]
    writer.erase("C-RACE", epoch=epoch, publish=False)
    assert raced
    # Neither entry survives: the email's would have named the erased citizen for any later event.
    assert writer.resolve([PHONE, EMAIL], epoch=epoch) == {}
    assert redis_client.exists(*CitizenKeys(key_prefix, epoch, "C-RACE").erasable()) == 0


async def test_the_api_erasure_checks_the_identifiers_it_read_too(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    epoch = writer.current_epoch()
    writer.apply_batch(taught("C-RACE-2", phone="07700 900123", email=None))  # type: ignore[arg-type]
    eraser = CitizenEraser(async_redis, prefix=key_prefix)
    forget = eraser._forget
    raced: list[bool] = []

    async def forget_while_the_consumer_teaches(**kwargs: Any) -> Any:
        if not raced:
            raced.append(True)
            writer.apply_batch(taught("C-RACE-2", phone="07700 900123", email="Anna.Jones@example.org"))
        return await forget(**kwargs)

    eraser._forget = forget_while_the_consumer_teaches  # type: ignore[assignment]
    assert await eraser.erase("C-RACE-2") > 0
    assert raced
    assert writer.resolve([PHONE, EMAIL], epoch=epoch) == {}
