"""The bench's events are valid under the contract, and stamped ids carry their send time."""

from datetime import UTC, datetime

from bench.workload import Workload, events, per_citizen, sent_ns_of, stamped_id, warm_up_id
from events.codec import decode_record
from models.events import STRUCTURED_CONTENT_TYPE

HEADERS = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]


def test_every_generated_event_decodes_for_its_key() -> None:
    for key, value in events(Workload(citizens=50), 500):
        assert decode_record(value, HEADERS).subject == key


def test_per_citizen_gives_each_citizen_exactly_that_many() -> None:
    keys = [key for key, _value in per_citizen(Workload(citizens=3), 4)]
    assert sorted(set(keys)) == ["B-0000001", "B-0000002", "B-0000003"]
    assert all(keys.count(key) == 4 for key in set(keys))


def test_the_same_seed_gives_the_same_events() -> None:
    now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    assert list(events(Workload(citizens=10), 20, now=now)) == list(
        events(Workload(citizens=10), 20, now=now)
    )


def test_stamped_ids_carry_their_send_time() -> None:
    assert sent_ns_of(stamped_id(1_700_000_000_123_456_789, 42)) == 1_700_000_000_123_456_789
    assert sent_ns_of("e-12") is None
    assert sent_ns_of("tx-1") is None


def test_warm_up_ids_are_not_timed() -> None:
    assert sent_ns_of(warm_up_id(7)) is None
    assert warm_up_id(7) != warm_up_id(8)
