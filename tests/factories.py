"""Test data: CloudEvents as the organisation's services publish them, and stream helpers."""

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from context.service import EventWrite, plan_write
from events.signing import ErasureSigner, SigningSettings
from models.events import CloudEvent
from models.taxonomy import ERASURE_SOURCE, ERASURE_TYPE, EXAMPLE_DATA

# The erasure signer of the test set-up's settings (its development key), as its API and consumers hold it.
ERASURES = ErasureSigner.from_settings(SigningSettings())


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
        data=data if data is not None else example_data(type_),
    )


def make_erasure(citizen_id: str, *, minutes_ago: float = 0, now: datetime | None = None) -> CloudEvent:
    """A `citizen.erased` record as the API publishes it: from its source, signed."""
    data = {"channel": "system", "summary": "Erased."}
    event = make_event(
        citizen_id, type_=ERASURE_TYPE, source=ERASURE_SOURCE, data=data, minutes_ago=minutes_ago, now=now
    )
    return ERASURES.signed(event)


def writes_for(*events: CloudEvent) -> list[EventWrite]:
    """What the consumer would apply for these (resolved) events."""
    return [plan_write(event, default_region="GB") for event in events]


def example_data(type_: str, **changes: Any) -> dict[str, Any]:
    """The documented example data of a type (a fresh call id for calls), with `changes` applied."""
    data = dict(EXAMPLE_DATA.get(type_, {"note": "a type this project does not know"}))
    if "call_id" in data:
        data["call_id"] = f"CALL-{uuid.uuid4().hex[:8]}"
    return {**data, **changes}


def next_message(websocket: Any, *types: str, timeout: float = 10) -> dict[str, Any]:
    """The next stream message of one of `types` within `timeout`, skipping heartbeats and presence."""
    deadline = time.monotonic() + timeout
    while True:
        message: dict[str, Any] = json.loads(websocket.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        if message["type"] in types:
            return message
        assert message["type"] in {"heartbeat", "presence"}, message


def close_code(websocket: Any) -> int:
    """Read a TestClient WebSocket until the server closes it; the close code.

    A heartbeat first means the stream stayed open for a whole interval: that fails the test rather than
    reading forever (a TestClient read has no timeout).
    """
    from starlette.websockets import WebSocketDisconnect

    try:
        while True:
            message = websocket.receive_json()
            assert message["type"] != "heartbeat", "the stream stayed open for a heartbeat interval"
    except WebSocketDisconnect as closed:
        return closed.code
