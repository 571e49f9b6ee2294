"""Synthetic traffic: valid events follow the contract, malformed ones are dead-lettered, nothing stops."""

import gc
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

from events.codec import InvalidEvent, decode_record
from events.deadletter import dead_letter_topic
from events.simulate import MALFORMED_REASONS, Simulator, malformed_due, run_length, simulated_phone
from ops.cli import main
from tests.conftest import Stack, topic_records, wait_until

SMALL = ("--malformed", "4", "--seed", "1", "--no-progress")
PUBLISHED = re.compile(r"published (\d+) records? to ")


def published_count(output: str) -> int:
    """How many records a run's summary says were published."""
    found = PUBLISHED.search(output)
    assert found is not None, output
    return int(found.group(1))


def test_every_simulated_record_is_a_valid_event_of_the_contract() -> None:
    simulator = Simulator(citizens=20, extra_citizens=("C-100234",), seed=7)
    now = datetime.now(UTC)
    records = [simulator.next_record(now) for _ in range(400)]
    events = [decode_record(record.value, record.headers) for record in records]
    assert all(event.subject == record.citizen_id for event, record in zip(events, records, strict=True))
    assert all(record.key == record.citizen_id.encode() for record in records if record.citizen_id)
    types = Counter(event.type for event in events)
    # Realistic variety: calls, chats, cases, payments, appointments, profiles.
    assert {"call.started", "call.ended", "chat.message", "case.opened", "payment.failed"} <= set(types)
    assert {"appointment.booked", "profile.updated"} <= set(types)
    # A named (demo) citizen gets live traffic but never a profile of the simulator's.
    demo = [event for event in events if event.subject == "C-100234"]
    assert demo
    assert all(event.type != "profile.updated" for event in demo)


def test_a_missed_appointment_is_one_the_citizen_booked_missed_after_it_started() -> None:
    simulator = Simulator(citizens=40, seed=9)
    now = datetime.now(UTC)
    events = [decode_record(simulator.next_record(now).value) for _ in range(3000)]
    booked = {
        (event.subject, event.data["appointment_id"]): event
        for event in events
        if event.type == "appointment.booked"
    }
    missed = [event for event in events if event.type == "appointment.missed"]
    assert missed
    for event in missed:
        booking = booked[(event.subject, event.data["appointment_id"])]
        starts = datetime.fromisoformat(event.data["starts_at"])
        assert starts == datetime.fromisoformat(booking.data["starts_at"])
        assert booking.time < starts < event.time <= now
        purpose = booking.data["summary"].removesuffix(" booked").lower()
        assert event.data["summary"] == f"Did not attend the {purpose}"


def test_a_simulated_citizen_starts_with_a_profile_and_a_findable_phone_number() -> None:
    simulator = Simulator(citizens=1, seed=3)
    first = decode_record(simulator.next_record().value)
    assert first.type == "profile.updated"
    assert isinstance(first.data, dict)
    assert first.data["phone"] == simulated_phone(0)


def test_simulated_phone_numbers_are_distinct_and_never_the_demo_citizens() -> None:
    numbers = [simulated_phone(n) for n in range(1500)]
    assert len(set(numbers)) == 1500
    assert "07700 900123" not in numbers
    assert simulated_phone(1500) is None


def test_the_same_seed_gives_the_same_traffic() -> None:
    now = datetime.now(UTC)
    first, second = Simulator(citizens=5, seed=11), Simulator(citizens=5, seed=11)
    assert [first.next_record(now).value for _ in range(50)] == [
        second.next_record(now).value for _ in range(50)
    ]


def test_each_kind_of_malformed_record_is_refused_with_its_reason() -> None:
    simulator = Simulator(citizens=3, seed=5)
    for expected in MALFORMED_REASONS:
        record = simulator.malformed_record()
        assert record.malformed == expected
        with pytest.raises(InvalidEvent) as refused:
            decode_record(record.value, record.headers)
        assert refused.value.reason == expected


def test_malformed_records_are_spread_over_the_run_never_first_and_never_more_than_half() -> None:
    def positions(total: int, malformed: int) -> list[int]:
        planted, at = 0, []
        for index in range(total):
            if malformed_due(planted, malformed, done=index / total, sent=index):
                planted += 1
                at.append(index)
        return at

    assert positions(40, 4) == [5, 15, 25, 35]
    assert positions(3, 1) == [2]
    assert positions(4, 2) == [1, 3]
    assert positions(10, 0) == []
    # Asked for more than the records allow, no more than half of those sent so far, and never first.
    assert positions(6, 6) == [1, 3, 5]


def test_a_run_bound_by_time_plants_its_malformed_records_when_its_rate_is_out_of_reach() -> None:
    # A run of 10 s at a rate reached only a tenth of: by its positions (the 4th of 4 at 87.5 % of the
    # records), it would have planted none after the first; by time, each once its share of the run is done.
    planted = 0
    for sent in range(1000):  # a tenth of the 10,000 records the rate promised
        done = max(sent / 10_000, sent / 1000)  # its time runs at ten times its records
        planted += malformed_due(planted, 4, done=done, sent=sent)
    assert planted == 4
    # Done by time alone, the next record is malformed once only: the n-th is due at (n + 0.5) / 4.
    assert malformed_due(0, 4, done=0.125, sent=10)
    assert not malformed_due(1, 4, done=0.3, sent=10)
    assert malformed_due(1, 4, done=0.375, sent=10)
    assert not malformed_due(4, 4, done=1.0, sent=10)


@pytest.mark.parametrize(
    ("count", "duration_s", "rate", "records"),
    [
        (None, None, 5.0, 500),  # the default run
        (3, None, 5.0, 3),
        (None, 0.5, 1.0, 1),  # shorter than one interval: the first record is sent at once
        (None, 10, 0.05, 1),
        (None, 1, 1.0, 1),
        (None, 1.5, 2.0, 3),  # at 0, 0.5 and 1 s
        (None, 0.3, 10.0, 3),  # not 4: 0.3 * 10 is 3.0000000000000004
        (2, 10, 5.0, 2),
        (100, 2, 5.0, 10),
    ],
)
def test_a_run_sends_the_records_its_count_or_its_pace_within_its_duration_allows(
    count: int | None, duration_s: float | None, rate: float, records: int
) -> None:
    assert run_length(count, duration_s, rate) == records


def test_simulate_publishes_traffic_that_reaches_the_desk_and_the_dead_letter_topic(stack: Stack) -> None:
    stack.consumer()
    stack.api()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "simulate",
            "--citizens",
            "5",
            "--count",
            "40",
            "--rate",
            "200",
            *SMALL,
        ],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "published 40 records" in result.stdout
    topic = stack.env["CITIZEN_CONTEXT_KAFKA_TOPIC"]

    def dead_lettered() -> list[str]:
        return sorted(
            dict(record.headers)["dlq.reason"].decode() for record in topic_records(dead_letter_topic(topic))
        )

    wait_until(lambda: len(dead_lettered()) == 4, what="four dead letters")
    assert dead_lettered() == sorted(MALFORMED_REASONS)

    # Every other record reached the projection.
    wait_until(lambda: stack.applied() == 36, what="36 events applied")


def test_a_short_run_sends_at_most_half_junk_and_no_citizen_is_a_usage_error(kafka_topic: str) -> None:
    env = {**os.environ, "CITIZEN_CONTEXT_KAFKA_TOPIC": kafka_topic}

    def simulate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ops.cli", "simulate", "--rate", "200", "--no-progress", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # Three records asked for, four malformed by default: one malformed, spread among two good ones.
    short = simulate("--citizens", "2", "--count", "3")
    assert short.returncode == 0, short.stderr
    assert "published 3 records" in short.stdout
    assert "(1 malformed," in short.stdout
    assert "more than half" not in short.stdout  # the default, not asked for: nothing to say
    asked = simulate("--citizens", "2", "--count", "3", "--malformed", "3")
    assert asked.returncode == 0, asked.stderr
    assert "--malformed 3 is more than half of 3 records: 1 will be sent" in asked.stdout  # said, not silent
    assert "(1 malformed," in asked.stdout
    named = simulate("--citizens", "0", "--citizen", "C-100234", "--count", "2", "--malformed", "0")
    assert named.returncode == 0, named.stderr
    assert "published 2 records" in named.stdout
    one = simulate("--citizens", "1", "--count", "1")
    assert one.returncode == 0, one.stderr
    assert f"published 1 record to {kafka_topic}" in one.stdout  # not "1 records"
    assert "(0 malformed," in one.stdout
    # Half a second at one a second: the record due at once is sent (none was).
    brief = simulate("--citizens", "1", "--duration", "0.5", "--rate", "1")
    assert brief.returncode == 0, brief.stderr
    assert f"published 1 record to {kafka_topic}" in brief.stdout
    nobody = simulate("--citizens", "0", "--count", "3")
    assert nobody.returncode == 2
    assert "simulate at least one citizen" in nobody.stderr


def test_a_run_bound_by_time_at_an_unreachable_rate_still_sends_malformed_records(kafka_topic: str) -> None:
    # 150,000 records promised in 1.5 s, far more than one producer sends: placed by position alone, the
    # malformed records (at 12.5 %, 37.5 %, ... of them) were never reached, and none was sent.
    too_fast = ("--citizens", "5", "--rate", "100000", "--duration", "1.5", "--malformed", "4")
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "simulate", *too_fast, "--no-progress"],
        env={**os.environ, "CITIZEN_CONTEXT_KAFKA_TOPIC": kafka_topic},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    published = published_count(result.stdout)
    assert published < 150_000
    assert "(4 malformed," in result.stdout
    junk = [record for record in topic_records(kafka_topic) if b"truncated" in record.value]
    assert len(junk) == 1  # the not-json one, the first of the four kinds


def test_a_simulation_stopped_by_sigterm_says_what_it_published(kafka_topic: str) -> None:
    # It ended without a word, as if nothing had been published.
    env = {**os.environ, "CITIZEN_CONTEXT_KAFKA_TOPIC": kafka_topic}
    command = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "simulate", "--rate", "20", "--count", "100000", "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: len(topic_records(kafka_topic)) >= 5, what="records published")
        command.send_signal(signal.SIGTERM)
        output, errors = command.communicate(timeout=60)
    finally:
        command.kill()
        command.wait()

    # As a shell reports a command that Ctrl-C ended (a SIGTERM is taken as one), after the summary.
    assert command.returncode == 130, errors
    published = published_count(output)
    assert published >= 5
    assert len(topic_records(kafka_topic)) == published


def test_a_simulation_into_a_topic_that_does_not_exist_says_so_without_a_traceback() -> None:
    # The broker creates no topic by itself: the first send waited for its metadata, then raised.
    missing = f"nowhere-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "CITIZEN_CONTEXT_KAFKA_TOPIC": missing}
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "simulate", "--count", "3", "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert f"published 0 records to {missing}" in result.stdout
    assert "Kafka took no more records (KafkaTimeoutError(" in result.stderr
    assert f"and topic {missing} there?" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_slow_acknowledgement_is_waited_for_again_not_told_as_kafka_gone(
    kafka_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The final wait for acknowledgements timing out was told as a broker gone or a topic missing.
    flush = KafkaProducer.flush
    waits: list[float | None] = []

    def first_wait_times_out(self: KafkaProducer, timeout: float | None = None) -> None:
        waits.append(timeout)
        if len(waits) == 1:
            raise KafkaTimeoutError(f"Timeout after waiting for {timeout} secs.")
        flush(self, timeout=timeout)

    monkeypatch.setattr(KafkaProducer, "flush", first_wait_times_out)
    monkeypatch.setenv("CITIZEN_CONTEXT_KAFKA_TOPIC", kafka_topic)
    result = CliRunner().invoke(main, ["simulate", "--count", "3", "--rate", "1000", "--no-progress"])

    assert waits[0] == 30
    assert result.exit_code == 0, result.output
    assert f"published 3 records to {kafka_topic}" in result.output
    assert len(topic_records(kafka_topic)) == 3


def test_acknowledgements_that_never_come_are_counted_after_the_summary(
    kafka_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `close` waits for them first and raised from the cleanup: a traceback, and no summary.
    def never_in_time(self: KafkaProducer, timeout: float | None = None) -> None:
        raise KafkaTimeoutError(f"Timeout after waiting for {timeout} secs.")

    monkeypatch.setattr(KafkaProducer, "flush", never_in_time)
    monkeypatch.setenv("CITIZEN_CONTEXT_KAFKA_TOPIC", kafka_topic)
    result = CliRunner().invoke(main, ["simulate", "--count", "3", "--rate", "1000", "--no-progress"])
    monkeypatch.undo()
    gc.collect()  # the producer left unclosed is closed now, by its own finaliser, waiting as it should

    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    # The sender still delivers in the background: how many were acknowledged by the summary varies.
    published = published_count(result.output)
    if published < 3:
        assert result.exit_code == 1
        assert f"{3 - published} of 3 records sent were not acknowledged, not in time" in result.output
    else:
        assert result.exit_code == 0, result.output
