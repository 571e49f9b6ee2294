"""All SQL about enquiries."""

import uuid
from datetime import UTC, datetime

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


def complete_enquiry(session: Session, *, enquiry: Enquiry, outcome: str, notes: str | None) -> Enquiry:
    """Mark an enquiry completed with its outcome."""
    enquiry.status = EnquiryStatus.completed
    enquiry.completed_at = datetime.now(UTC)
    enquiry.outcome = outcome
    enquiry.notes = notes
    session.add(enquiry)
    session.commit()
    session.refresh(enquiry)
    return enquiry
