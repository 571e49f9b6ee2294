"""All SQL about enquiries."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, delete, update
from sqlmodel import Session, col, select

from models.tables import Enquiry, EnquiryStatus


def create_enquiry(session: Session, *, agent_id: str, citizen_id: str, channel: str) -> Enquiry:
    """Record a new active enquiry."""
    enquiry = Enquiry(id=str(uuid.uuid4()), agent_id=agent_id, citizen_id=citizen_id, channel=channel)
    session.add(enquiry)
    session.commit()
    session.refresh(enquiry)
    return enquiry


def get_enquiry(session: Session, *, enquiry_id: str) -> Enquiry | None:
    """One enquiry by id."""
    return session.get(Enquiry, enquiry_id)


def active_among(session: Session, *, enquiry_ids: list[str]) -> set[str]:
    """Which of `enquiry_ids` are active (open streams re-check theirs together)."""
    statement = select(Enquiry.id).where(
        col(Enquiry.id).in_(enquiry_ids), col(Enquiry.status) == EnquiryStatus.active
    )
    return set(session.exec(statement))


def held_enquiry_ids(session: Session, *, agent_id: str, citizen_id: str, limit: int) -> list[str]:
    """The agent's active enquiries for the citizen, newest first (as `holding_enquiry_ids` ranks them), at
    most `limit`."""
    statement = (
        select(Enquiry.id)
        .where(
            Enquiry.agent_id == agent_id,
            Enquiry.citizen_id == citizen_id,
            Enquiry.status == EnquiryStatus.active,
        )
        .order_by(col(Enquiry.started_at).desc(), col(Enquiry.id).desc())
        .limit(limit)
    )
    return list(session.exec(statement))


def active_enquiries(session: Session, *, agent_id: str) -> list[Enquiry]:
    """An agent's active enquiries, newest first."""
    statement = (
        select(Enquiry)
        .where(Enquiry.agent_id == agent_id, Enquiry.status == EnquiryStatus.active)
        .order_by(col(Enquiry.started_at).desc())
    )
    return list(session.exec(statement))


def claim_completion(session: Session, *, enquiry_id: str, outcome: str, notes: str | None) -> Enquiry | None:
    """Record how an active enquiry ends, in one conditional update; None if a completion was claimed before.

    The enquiry stays active: it is completed (`finish_completion`) only once Kafka has its event. An active
    enquiry with an outcome is a completion under way, or one whose event Kafka did not acknowledge.
    """
    result = session.execute(
        update(Enquiry)
        .where(
            col(Enquiry.id) == enquiry_id,
            col(Enquiry.status) == EnquiryStatus.active,
            col(Enquiry.outcome).is_(None),
        )
        .values(completed_at=datetime.now(UTC), outcome=outcome, notes=notes)
    )
    session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(Enquiry, enquiry_id, populate_existing=True)


def finish_completion(session: Session, *, enquiry_id: str) -> Enquiry | None:
    """Complete an enquiry whose completion was claimed (idempotent); None if it no longer exists."""
    session.execute(
        update(Enquiry)
        .where(
            col(Enquiry.id) == enquiry_id,
            col(Enquiry.status) == EnquiryStatus.active,
            col(Enquiry.outcome).is_not(None),
        )
        .values(status=EnquiryStatus.completed)
    )
    session.commit()
    return session.get(Enquiry, enquiry_id, populate_existing=True)


# Built once: every context read asks it, and building a statement cost more than running it.
_HOLDING = (
    select(Enquiry.agent_id, Enquiry.citizen_id, Enquiry.id)
    .where(
        col(Enquiry.agent_id).in_(bindparam("agent_ids", expanding=True)),
        col(Enquiry.citizen_id).in_(bindparam("citizen_ids", expanding=True)),
        col(Enquiry.status) == EnquiryStatus.active,
    )
    .order_by(col(Enquiry.started_at), col(Enquiry.id))  # the id decides between two started at once
)


def holding_enquiry_ids(
    connection: Connection, *, pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """For each (agent, citizen), the id of the agent's most recent active enquiry for the citizen, if any.

    One query for many pairs (the audit writes reads in batches); pairs with none are left out.
    """
    rows = connection.execute(
        _HOLDING,
        {"agent_ids": sorted({a for a, _c in pairs}), "citizen_ids": sorted({c for _a, c in pairs})},
    )
    wanted = set(pairs)
    # Oldest first, so the most recent enquiry of a pair is the one left standing.
    return {(agent, citizen): id_ for agent, citizen, id_ in rows if (agent, citizen) in wanted}


def citizen_enquiries(session: Session, *, citizen_id: str) -> list[Enquiry]:
    """Every enquiry about a citizen, oldest first (for an export)."""
    statement = select(Enquiry).where(Enquiry.citizen_id == citizen_id).order_by(col(Enquiry.started_at))
    return list(session.exec(statement))


def delete_citizen_enquiries(session: Session, *, citizen_id: str) -> int:
    """Remove every enquiry about a citizen (an erasure); returns how many."""
    result = session.execute(delete(Enquiry).where(col(Enquiry.citizen_id) == citizen_id))
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]
