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
    return [
        event(
            anna,
            6.2,
            "/benefits/case-management",
            "case.opened",
            {
                "channel": "web",
                "summary": "Housing benefit claim HB-4471 opened",
                "case_ref": "HB-4471",
                "status": "open",
            },
        ),
        event(
            anna,
            5.1,
            "/telephony/contact-centre",
            "call.ended",
            {"channel": "phone", "summary": "Asked when HB-4471 will be decided", "duration_s": 412},
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
                "duration_s": 655,
            },
        ),
        event(
            anna,
            0.01,
            "/telephony/contact-centre",
            "call.started",
            {"channel": "phone", "summary": "Inbound call from a known number"},
        ),
        event(
            ben,
            4.0,
            "/appointments",
            "appointment.booked",
            {
                "channel": "web",
                "summary": "Blue badge assessment booked",
                "appointment_at": (now + timedelta(days=3)).isoformat(),
            },
        ),
        event(
            ben,
            0.5,
            "/webchat",
            "chat.message",
            {"channel": "chat", "summary": "Asked whether a BSL interpreter can attend the assessment"},
        ),
        event(
            chidi,
            3.0,
            "/letters",
            "letter.sent",
            {"channel": "post", "summary": "Large-print reminder about the missed bin collection appeal"},
        ),
        event(
            chidi,
            0.2,
            "/complaints",
            "complaint.raised",
            {
                "channel": "email",
                "summary": "Complaint about repeated missed collections",
                "case_ref": "CMP-0912",
            },
        ),
    ]
