"""Test data: CloudEvents as the organisation's services publish them."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from models.events import CloudEvent


def make_event(
    citizen_id: str = "C-1",
    *,
    minutes_ago: float = 0,
    type_: str = "call.ended",
    source: str = "/telephony/contact-centre",
    event_id: str | None = None,
    now: datetime | None = None,
    data: dict[str, Any] | None = None,
) -> CloudEvent:
    """One valid event for `citizen_id`, `minutes_ago` before `now`."""
    moment = (now or datetime.now(UTC)) - timedelta(minutes=minutes_ago)
    return CloudEvent(
        specversion="1.0",
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=type_,
        subject=citizen_id,
        time=moment,
        datacontenttype="application/json",
        data=data if data is not None else {"channel": "phone", "summary": "Called about a claim"},
    )
