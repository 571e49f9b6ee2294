"""An erasure racing an event that teaches the citizen an identifier, against the real Redis: no index
entry is left behind to bring the citizen back. The event lands between the erasure's forgetting of the
index entries it read and its deletion of the citizen: teaching a new identifier, or one just forgotten."""

from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from context.identity import IdentifierKind
from context.keys import CitizenKeys
from context.settings import TimelineSettings
from context.store import CitizenEraser, ProjectionWriter
from tests.factories import example_data, make_event, writes_for

PHONE = (IdentifierKind.phone, "+447700900123")
EMAIL = (IdentifierKind.email, "anna.jones@example.org")
# What the racing event teaches: a new identifier (the email), or the phone again.
RACING = {"a new identifier": "Anna.Jones@example.org", "the same identifier again": None}


def taught(citizen: str, *, email: str | None) -> Any:
    """A profile update teaching the citizen the phone, and the email when given."""
    data = example_data("profile.updated", channel="system", phone="07700 900123", email=email)
    return writes_for(make_event(citizen, type_="profile.updated", data=data))


@pytest.mark.parametrize("email", RACING.values(), ids=list(RACING))
def test_an_identifier_taught_during_an_erasure_is_erased_too(
    redis_client: "redis.Redis", key_prefix: str, email: str | None
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    epoch = writer.current_epoch()
    writer.apply_batch(taught("C-RACE", email=None))
    forget = writer._forget
    raced: list[bool] = []

    def forget_then_the_consumer_teaches(**kwargs: Any) -> Any:
        # Once the entry is forgotten, and before the citizen is deleted, an event teaching the citizen is
        # applied (another process's batch, in production).
        forgotten = forget(**kwargs)
        if not raced:
            raced.append(True)
            writer.apply_batch(taught("C-RACE", email=email))
        return forgotten

    writer._forget = forget_then_the_consumer_teaches  # type: ignore[assignment]
    writer.erase("C-RACE", epoch=epoch, publish=False)
    assert raced
    # No entry survives: it would name the erased citizen for any later event.
    assert writer.resolve([PHONE, EMAIL], epoch=epoch) == {}
    assert redis_client.exists(*CitizenKeys(key_prefix, epoch, "C-RACE").erasable()) == 0


@pytest.mark.parametrize("email", RACING.values(), ids=list(RACING))
async def test_the_api_erasure_checks_what_it_forgot_too(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str, email: str | None
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    epoch = writer.current_epoch()
    writer.apply_batch(taught("C-RACE-2", email=None))
    eraser = CitizenEraser(async_redis, prefix=key_prefix)
    forget = eraser._forget
    raced: list[bool] = []

    async def forget_then_the_consumer_teaches(**kwargs: Any) -> Any:
        forgotten = await forget(**kwargs)
        if not raced:
            raced.append(True)
            writer.apply_batch(taught("C-RACE-2", email=email))
        return forgotten

    eraser._forget = forget_then_the_consumer_teaches  # type: ignore[assignment]
    assert await eraser.erase("C-RACE-2") > 0
    assert raced
    assert writer.resolve([PHONE, EMAIL], epoch=epoch) == {}
