"""The summary rules, as pure functions, and their incremental upkeep."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from context.summary import fact_of, summarise, summary_changes_at
from context.summary_cache import SummaryCache
from context.timeline import retained
from models.context import Summary
from models.events import CloudEvent
from tests.factories import example_data, make_event

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def at(days_ago: float, type_: str, citizen: str = "C-1", **data: object) -> CloudEvent:
    return make_event(
        citizen, minutes_ago=days_ago * 24 * 60, type_=type_, now=NOW, data=example_data(type_, **data)
    )


def test_a_call_counts_once_from_its_start() -> None:
    start = at(1, "call.started", call_id="CALL-1")
    end = at(0.99, "call.ended", call_id="CALL-1")
    summary = summarise([f for e in (start, end) if (f := fact_of(e))], now=NOW)
    assert summary.contacts_7d == {"phone": 1}
    assert summary.last_contact is not None
    assert summary.last_contact.time == start.time


def test_contacts_by_channel_in_7_and_30_days_and_the_repeat_flag() -> None:
    events = [
        at(1, "call.started"),
        at(2, "chat.message", conversation_id="CHAT-1"),
        at(2.1, "chat.message", conversation_id="CHAT-1"),
        at(3, "email.received", thread_id="T-1"),
        at(20, "web.form.submitted"),
        at(40, "call.started"),
        at(0.5, "letter.sent"),
    ]
    summary = summarise([f for e in events if (f := fact_of(e))], now=NOW)
    assert summary.contacts_7d == {"chat": 1, "email": 1, "phone": 1}
    assert summary.contacts_30d == {"chat": 1, "email": 1, "phone": 1, "web": 1}
    assert summary.repeat_contact
    assert summary.last_contact is not None
    assert summary.last_contact.channel == "phone"
    two_contacts = [f for e in events[:2] if (f := fact_of(e))]
    assert not summarise(two_contacts, now=NOW).repeat_contact


def test_open_cases_show_their_latest_status_and_closed_ones_go() -> None:
    events = [
        at(10, "case.opened", case_ref="HB-1", status="open"),
        at(5, "case.updated", case_ref="HB-1", status="awaiting-evidence"),
        at(9, "case.opened", case_ref="HB-2"),
        at(1, "case.closed", case_ref="HB-2"),
    ]
    summary = summarise([f for e in events if (f := fact_of(e))], now=NOW)
    assert [(c.case_ref, c.status) for c in summary.open_cases] == [("HB-1", "awaiting-evidence")]


def test_a_case_closed_under_its_reference_in_other_letters_is_closed() -> None:
    # Identity resolution reads "hb-900" and "HB-900" as one case (context/identity.py); so does the summary.
    events = [
        at(10, "case.opened", case_ref="hb-900", status="open"),
        at(1, "case.closed", case_ref="HB-900"),
        at(5, "case.opened", case_ref=" hb-901 "),
        at(4, "case.updated", case_ref="HB-901", status="awaiting-evidence"),
    ]
    summary = summarise([f for e in events if (f := fact_of(e))], now=NOW)
    assert [(c.case_ref, c.status) for c in summary.open_cases] == [("HB-901", "awaiting-evidence")]


def test_upcoming_and_missed_appointments() -> None:
    soon, past = (NOW + timedelta(days=2)).isoformat(), (NOW - timedelta(days=2)).isoformat()
    events = [
        at(5, "appointment.booked", appointment_id="A-1", starts_at=soon),
        at(5, "appointment.booked", appointment_id="A-2", starts_at=past),
        at(1.9, "appointment.missed", appointment_id="A-2", starts_at=None),
    ]
    summary = summarise([f for e in events if (f := fact_of(e))], now=NOW)
    assert [a.appointment_id for a in summary.upcoming_appointments] == ["A-1"]
    assert [(m.appointment_id, m.starts_at) for m in summary.missed_appointments] == [
        ("A-2", datetime.fromisoformat(past))
    ]


def test_recent_failed_payments_newest_first() -> None:
    events = [
        at(2, "payment.failed", amount="10.00"),
        at(1, "payment.failed", amount="20.00"),
        at(45, "payment.failed"),
    ]
    summary = summarise([f for e in events if (f := fact_of(e))], now=NOW)
    assert [p.amount for p in summary.recent_failed_payments] == ["20.00", "10.00"]
    # A publisher's number, or a string with one decimal place, is shown to the penny.
    for sent in (2.5, "2.5", "7"):
        facts = [f for f in [fact_of(at(1, "payment.failed", amount=sent))] if f]
        [payment] = summarise(facts, now=NOW).recent_failed_payments
        assert payment.amount == f"{float(sent):.2f}"


TYPES = [
    "call.started",
    "call.ended",
    "chat.message",
    "email.received",
    "web.form.submitted",
    "case.opened",
    "case.updated",
    "case.closed",
    "appointment.booked",
    "appointment.missed",
    "payment.failed",
    "letter.sent",
    "complaint.raised",
    "profile.updated",
    "parking.permit.issued",
]


@st.composite
def histories(draw: st.DrawFn) -> list[CloudEvent]:
    """Events of one citizen over ~60 days, with shared call/chat/case/appointment ids and duplicates."""
    count = draw(st.integers(min_value=0, max_value=25))
    events = []
    for n in range(count):
        type_ = draw(st.sampled_from(TYPES))
        ref = draw(st.sampled_from(["1", "2", "3"]))
        data = example_data(type_)
        for name in (
            "call_id",
            "conversation_id",
            "case_ref",
            "appointment_id",
            "complaint_ref",
            "thread_id",
        ):
            if name in data:
                data[name] = f"{name}-{ref}"
        if "starts_at" in data:
            data["starts_at"] = (NOW + timedelta(days=draw(st.integers(-10, 10)))).isoformat()
        days_ago = draw(st.floats(min_value=0, max_value=60, allow_nan=False))
        events.append(
            make_event("C-1", event_id=f"e-{n}", minutes_ago=days_ago * 1440, type_=type_, now=NOW, data=data)
        )
    duplicates = draw(st.lists(st.sampled_from(events), max_size=3)) if events else []
    return events + duplicates


@given(histories(), st.integers(min_value=1, max_value=30))
def test_incremental_facts_give_the_from_scratch_summary(events: list[CloudEvent], cap: int) -> None:
    """Keeping one fact per kept event and dropping it on eviction equals summarising the timeline."""
    facts: dict[str, object] = {}
    kept: list[CloudEvent] = []
    for event in events:
        before = {e.dedup_key for e in kept}
        kept = retained([*kept, event], now=NOW, max_events=cap, max_age=timedelta(days=90))
        after = {e.dedup_key for e in kept}
        if event.dedup_key in after - before and (fact := fact_of(event)) is not None:
            facts[event.dedup_key] = fact
        for gone in before - after:
            facts.pop(gone, None)
    timeline = retained(events, now=NOW, max_events=cap, max_age=timedelta(days=90))
    from_scratch = summarise([f for e in timeline if (f := fact_of(e))], now=NOW)
    assert summarise(list(facts.values()), now=NOW) == from_scratch  # type: ignore[arg-type]


@given(histories())
def test_the_summary_does_not_depend_on_the_order_of_facts(events: list[CloudEvent]) -> None:
    facts = [f for e in {e.dedup_key: e for e in events}.values() if (f := fact_of(e))]
    assert summarise(facts, now=NOW) == summarise(list(reversed(facts)), now=NOW)


@given(histories(), st.floats(min_value=0, max_value=1, exclude_max=True, allow_nan=False))
def test_a_summary_holds_until_its_facts_next_cross_a_window(events: list[CloudEvent], part: float) -> None:
    """`summary_changes_at` is exact enough to cache on: any moment before it gives the same summary."""
    facts = [f for e in {e.dedup_key: e for e in events}.values() if (f := fact_of(e))]
    changes_at = summary_changes_at(facts, now=NOW)
    assert changes_at is None or changes_at >= NOW
    later = NOW + ((changes_at - NOW) if changes_at else timedelta(days=400)) * part
    if changes_at is not None and later >= changes_at:
        # A part just under 1 rounds to the whole span (timedelta keeps microseconds): strictly before.
        later = max(NOW, changes_at - timedelta(microseconds=1))
    assert summarise(facts, now=later) == summarise(facts, now=NOW)


def test_a_contact_changes_the_summary_when_it_leaves_the_week() -> None:
    facts = [f for e in [at(2, "call.started", call_id="CALL-1")] if (f := fact_of(e))]
    changes_at = summary_changes_at(facts, now=NOW)
    assert changes_at == facts[0].time + timedelta(days=7)
    after = changes_at + timedelta(microseconds=1)
    assert summarise(facts, now=after).contacts_7d != summarise(facts, now=NOW).contacts_7d


def test_the_summary_cache_reuses_a_summary_only_while_it_holds() -> None:
    cache = SummaryCache(maxsize=4)
    computed: list[datetime] = []

    def compute_at(moment: datetime) -> "Callable[[str], tuple[Summary, datetime | None]]":
        def compute(_facts: str) -> tuple[Summary, datetime | None]:
            computed.append(moment)
            return Summary(contacts_7d={"phone": len(computed)}), NOW + timedelta(days=1)

        return compute

    first = cache.summary("[a]", now=NOW, compute=compute_at(NOW))
    assert cache.summary("[a]", now=NOW + timedelta(hours=23), compute=compute_at(NOW)) is first
    # Other facts, a moment past the summary's validity, or one before it was computed: computed again.
    assert cache.summary("[a,b]", now=NOW, compute=compute_at(NOW)) is not first
    assert cache.summary("[a]", now=NOW + timedelta(days=1), compute=compute_at(NOW)) is not first
    assert cache.summary("[a]", now=NOW - timedelta(seconds=1), compute=compute_at(NOW)).contacts_7d == {
        "phone": 4
    }
    assert len(computed) == 4
