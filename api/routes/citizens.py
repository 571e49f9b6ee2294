"""A citizen's context: read over REST, streamed live over a WebSocket."""

import asyncio
import contextlib
import re
from typing import Annotated

import structlog
from fastapi import APIRouter, Path, WebSocket, WebSocketDisconnect, status

from api.deps import CurrentViewer, HubDep, ReaderDep
from api.problems import Problem
from api.streaming import Resync, Subscription
from context.store import ContextReader
from models.context import CitizenContext
from models.events import CITIZEN_ID_PATTERN
from models.ws import ChangeMessage, SnapshotMessage

log = structlog.get_logger("api")

router = APIRouter(prefix="/v1/citizens", tags=["citizens"])

CitizenIdPath = Annotated[
    str, Path(pattern=CITIZEN_ID_PATTERN, description="The citizen's id.", examples=["C-100234"])
]

# Close codes of the stream (4000-4999 are the application's own).
CLOSE_INVALID_CITIZEN = 4400


@router.get(
    "/{citizen_id}/context",
    response_model=CitizenContext,
    summary="A citizen's context",
    responses={
        422: {"model": Problem, "description": "The citizen id is not valid."},
        503: {"model": Problem, "description": "The context store is unavailable."},
    },
)
async def get_context(citizen_id: CitizenIdPath, reader: ReaderDep, viewer: CurrentViewer) -> CitizenContext:
    """The citizen's newest interactions and version. A citizen with no events has version 0."""
    return await reader.context(citizen_id)


@router.websocket("/{citizen_id}/stream")
async def stream_context(
    websocket: WebSocket, citizen_id: str, reader: ReaderDep, hub: HubDep, viewer: CurrentViewer
) -> None:
    """A snapshot on connect, then every change in order, each with its version."""
    if not re.fullmatch(CITIZEN_ID_PATTERN, citizen_id):
        await websocket.close(code=CLOSE_INVALID_CITIZEN, reason="invalid citizen id")
        return
    await websocket.accept()
    # Subscribe before reading the snapshot: a change landing in between is then queued, not missed,
    # and the version check below drops whatever the snapshot already contains.
    with hub.subscribe(citizen_id) as subscription:
        receiver = asyncio.create_task(_drain_client(websocket))
        sender = asyncio.create_task(_send_changes(websocket, citizen_id, reader, subscription))
        done, pending = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await task
        for task in done:
            if (error := task.exception()) and not isinstance(error, WebSocketDisconnect):
                log.warning("stream ended by error", error=repr(error))
                with contextlib.suppress(Exception):
                    await websocket.close(code=status.WS_1011_INTERNAL_ERROR)


async def _drain_client(websocket: WebSocket) -> None:
    """Read until the client goes away (client messages carry nothing yet)."""
    while True:
        await websocket.receive_text()


async def _send_changes(
    websocket: WebSocket, citizen_id: str, reader: ContextReader, subscription: Subscription
) -> None:
    context = await _send_snapshot(websocket, reader, citizen_id)
    epoch, version = context.epoch, context.version
    while True:
        item = await subscription.get()
        if isinstance(item, Resync) or item.epoch != epoch:
            context = await _send_snapshot(websocket, reader, citizen_id)
            epoch, version = context.epoch, context.version
            continue
        if item.version <= version:
            continue  # already in the snapshot
        missed = [item] if item.version == version + 1 else None
        if missed is None:
            # A change arrived before its predecessor reached us: fill the gap from the change log.
            missed = await reader.changes_since(citizen_id, epoch=epoch, version=version)
            if not missed or missed[-1].version < item.version:
                context = await _send_snapshot(websocket, reader, citizen_id)
                epoch, version = context.epoch, context.version
                continue
        for change in missed:
            message = ChangeMessage(
                citizen_id=citizen_id, epoch=change.epoch, version=change.version, event=change.event
            )
            await websocket.send_text(message.model_dump_json(exclude_none=True))
            version = change.version


async def _send_snapshot(websocket: WebSocket, reader: ContextReader, citizen_id: str) -> CitizenContext:
    context = await reader.context(citizen_id)
    await websocket.send_text(SnapshotMessage(context=context).model_dump_json(exclude_none=True))
    return context
