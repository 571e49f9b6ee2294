"""A few realistic interactions for a handful of citizens, for `citizen-context dev`."""

import uuid
from datetime import UTC, datetime, timedelta

from models.events import CloudEvent

DEMO_CITIZENS = ("C-100234", "C-100587", "C-200311")


def demo_events(now: datetime | None = None) -> list[CloudEvent]:
    """About a week of contact for three citizens, oldest first, as the organisation's services publish it."""
    now = now or datetime.now(UTC)
    # Ids are derived from the day, so running the demo twice in a day does not repeat its events.
    day = now.date().isoformat()

    def event(citizen: str, days_ago: float, source: str, type_: str, data: dict[str, object]) -> CloudEvent:
        return CloudEvent(
            specversion="1.0",
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{source}/{citizen}/{type_}/{days_ago}/{day}")),
            source=source,
            type=type_,
            subject=citizen,
            time=now - timedelta(days=days_ago),
            datacontenttype="application/json",
            data=data,
        )

    anna, ben, chidi = DEMO_CITIZENS
    soon = (now + timedelta(days=3)).replace(hour=10, minute=30, second=0, microsecond=0).isoformat()
    return [
        event(
            anna,
            8.0,
            "/profiles",
            "profile.updated",
            {
                "channel": "system",
                "summary": "Prefers Welsh; recently bereaved",
                "preferred_language": "cy",
                "vulnerability_flags": ["bereavement"],
                "phone": "07700 900123",
            },
        ),
        event(
            anna,
            6.2,
            "/benefits/case-management",
            "case.opened",
            {
                "channel": "web",
                "summary": "Housing benefit claim HB-4471 opened",
                "case_ref": "HB-4471",
                "case_type": "housing-benefit",
                "status": "open",
            },
        ),
        event(
            anna,
            5.1,
            "/telephony/contact-centre",
            "call.ended",
            {
                "channel": "phone",
                "summary": "Asked when HB-4471 will be decided",
                "call_id": "CALL-1001",
                "duration_s": 412,
            },
        ),
        event(
            anna,
            4.0,
            "/benefits/case-management",
            "case.updated",
            {
                "channel": "system",
                "summary": "Evidence requested for HB-4471",
                "case_ref": "HB-4471",
                "status": "awaiting-evidence",
            },
        ),
        event(
            anna,
            2.3,
            "/payments",
            "payment.failed",
            {
                "channel": "direct-debit",
                "summary": "Council tax instalment of GBP 142.00 failed",
                "amount": "142.00",
                "currency": "GBP",
                "reason": "insufficient funds",
            },
        ),
        event(
            anna,
            1.0,
            "/telephony/contact-centre",
            "call.ended",
            {
                "channel": "phone",
                "summary": "Called again about HB-4471 and the failed payment",
                "call_id": "CALL-1002",
                "duration_s": 655,
            },
        ),
        event(
            anna,
            0.01,
            "/telephony/contact-centre",
            "call.started",
            {"channel": "phone", "summary": "Inbound call from a known number", "call_id": "CALL-1003"},
        ),
        event(
            ben,
            9.0,
            "/profiles",
            "profile.updated",
            {"channel": "system", "summary": "Deaf; uses BSL", "communication_needs": ["bsl-interpreter"]},
        ),
        event(
            ben,
            4.0,
            "/appointments",
            "appointment.booked",
            {
                "channel": "web",
                "summary": "Blue badge assessment booked",
                "appointment_id": "APT-3301",
                "starts_at": soon,
                "location": "Civic Centre, room 4",
            },
        ),
        event(
            ben,
            0.5,
            "/webchat",
            "chat.message",
            {
                "channel": "chat",
                "summary": "Asked whether a BSL interpreter can attend the assessment",
                "conversation_id": "CHAT-5531",
            },
        ),
        event(
            chidi,
            12.0,
            "/profiles",
            "profile.updated",
            {"channel": "system", "summary": "Needs large print", "communication_needs": ["large-print"]},
        ),
        event(
            chidi,
            3.0,
            "/letters",
            "letter.sent",
            {
                "channel": "post",
                "summary": "Large-print reminder about the missed bin collection appeal",
                "format": "large-print",
            },
        ),
        event(
            chidi,
            0.2,
            "/complaints",
            "complaint.raised",
            {
                "channel": "email",
                "summary": "Complaint about repeated missed collections",
                "complaint_ref": "CMP-0912",
            },
        ),
    ]
