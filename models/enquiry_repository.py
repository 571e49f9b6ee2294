"""All SQL about enquiries."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import delete, update
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


def active_enquiries(session: Session, *, agent_id: str) -> list[Enquiry]:
    """An agent's active enquiries, newest first."""
    statement = (
        select(Enquiry)
        .where(Enquiry.agent_id == agent_id, Enquiry.status == EnquiryStatus.active)
        .order_by(col(Enquiry.started_at).desc())
    )
    return list(session.exec(statement))


def claim_completion(session: Session, *, enquiry_id: str, outcome: str, notes: str | None) -> Enquiry | None:
    """Complete an active enquiry in one conditional update; None if it was not active (someone else won)."""
    result = session.execute(
        update(Enquiry)
        .where(col(Enquiry.id) == enquiry_id, col(Enquiry.status) == EnquiryStatus.active)
        .values(status=EnquiryStatus.completed, completed_at=datetime.now(UTC), outcome=outcome, notes=notes)
    )
    session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(Enquiry, enquiry_id, populate_existing=True)


def holding_enquiry(session: Session, *, agent_id: str, citizen_id: str) -> Enquiry | None:
    """The agent's most recent active enquiry for this citizen, if any."""
    statement = (
        select(Enquiry)
        .where(
            Enquiry.agent_id == agent_id,
            Enquiry.citizen_id == citizen_id,
            Enquiry.status == EnquiryStatus.active,
        )
        .order_by(col(Enquiry.started_at).desc())
        .limit(1)
    )
    return session.exec(statement).first()


def citizen_enquiries(session: Session, *, citizen_id: str) -> list[Enquiry]:
    """Every enquiry about a citizen, oldest first (for an export)."""
    statement = select(Enquiry).where(Enquiry.citizen_id == citizen_id).order_by(col(Enquiry.started_at))
    return list(session.exec(statement))


def delete_citizen_enquiries(session: Session, *, citizen_id: str) -> int:
    """Remove every enquiry about a citizen (an erasure); returns how many."""
    result = session.execute(delete(Enquiry).where(col(Enquiry.citizen_id) == citizen_id))
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]
