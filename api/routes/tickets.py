"""Stream tickets: how a browser opens a WebSocket without putting a lasting secret in its URL."""

from fastapi import APIRouter, status

from api.deps import CurrentCaller, SecurityDep
from api.problems import caller_problems
from models.security import StreamTicket, StreamTicketRequest

router = APIRouter(prefix="/v1/stream-tickets", tags=["streams"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=StreamTicket,
    summary="A single-use ticket to open a stream",
    responses=caller_problems(),
)
async def issue_ticket(
    caller: CurrentCaller, security: SecurityDep, body: StreamTicketRequest | None = None
) -> StreamTicket:
    """Opens one stream as you, once, within seconds: `wss://…/stream?ticket=…`.

    Access to the citizen is checked when the stream opens, not here.
    """
    ticket = await security.issue_ticket(caller, reason=(body.reason if body else None))
    return StreamTicket(ticket=ticket, expires_in_s=security.settings.stream_ticket_ttl_s)
