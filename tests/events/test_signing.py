"""Erasure records' signatures, as pure functions: what verifies, what does not and why, and the settings
that hold the keys."""

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from events.codec import decode_judged, encode_structured
from events.consumer import _unverified_remedy
from events.settings import KafkaSettings
from events.signing import (
    DEVELOPMENT_KEY,
    SIGNATURE_ATTRIBUTE,
    UNSIGNED,
    ErasureSigner,
    SigningSettings,
    signing_cautions,
)
from models.events import CloudEvent
from models.taxonomy import ERASURE_SOURCE, ERASURE_TYPE
from tests.factories import make_event

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
NOT_AN_HMAC = f"`{SIGNATURE_ATTRIBUTE}` must end in a base64url HMAC-SHA-256 (43 characters)"
SIGNER = ErasureSigner(keys={"k1": b"1" * 32, "k2": b"2" * 32}, key_id="k2")


def erasure(citizen_id: str = "C-SIGN", *, minutes_ago: float = 0) -> CloudEvent:
    return make_event(
        citizen_id, type_=ERASURE_TYPE, source=ERASURE_SOURCE, data={}, minutes_ago=minutes_ago, now=NOW
    )


def read_back(event: CloudEvent) -> CloudEvent:
    """As the consumer reads it from the topic."""
    value, headers = encode_structured(event)
    return decode_judged(value, headers).event


def test_a_signed_erasure_verifies_once_read_back_from_the_topic() -> None:
    signed = SIGNER.signed(erasure())
    assert str(signed.__pydantic_extra__[SIGNATURE_ATTRIBUTE]).startswith("k2:")  # type: ignore[index]
    assert SIGNER.problem(read_back(signed)) is None


def test_any_key_listed_verifies_what_it_signed() -> None:
    previous = ErasureSigner(keys={"k1": b"1" * 32}, key_id="k1")
    assert SIGNER.problem(read_back(previous.signed(erasure()))) is None


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "C-OTHER"},
        {"time": NOW - timedelta(microseconds=1)},
        {"time": NOW + timedelta(days=1)},
        {"id": "erasure-another"},
    ],
)
def test_a_signed_erasure_changed_in_what_it_erases_does_not_verify(change: dict[str, object]) -> None:
    signed = SIGNER.signed(erasure())
    assert SIGNER.problem(read_back(signed.model_copy(update=change))) == (
        "the erasure record's signature does not match it"
    )


def test_the_same_moment_written_another_way_still_verifies() -> None:
    # Publishers' tools rewrite times (another zone, other digits): the signature covers the moment.
    signed = SIGNER.signed(erasure())
    value = encode_structured(signed)[0].replace(
        b'"2026-12-02T12:00:00Z"', b'"2026-12-02T13:00:00.000+01:00"'
    )
    assert b"+01:00" in value
    assert SIGNER.problem(decode_judged(value).event) is None


@pytest.mark.parametrize(
    ("signature", "problem"),
    [
        (None, f"an erasure record must carry the API's signature (extension `{SIGNATURE_ATTRIBUTE}`)"),
        ("no separator", f"`{SIGNATURE_ATTRIBUTE}` must be '<key id>:<signature>'"),
        (17, f"`{SIGNATURE_ATTRIBUTE}` must be '<key id>:<signature>'"),
        ("k3:abc", "the erasure record is signed with a key this process does not hold"),
        ("k2:" + "A" * 43, "the erasure record's signature does not match it"),
        # Refused before any comparison: a text that is not base64url cannot be compared in constant time.
        ("k2:", NOT_AN_HMAC),
        ("k2:" + "A" * 42, NOT_AN_HMAC),
        ("k2:" + "A" * 42 + "=", NOT_AN_HMAC),
        ("k2:" + "é" * 43, NOT_AN_HMAC),
        ("k2:" + "A" * 42 + "\ud800", NOT_AN_HMAC),
    ],
)
def test_what_does_not_verify_says_why_without_any_key(signature: object, problem: str) -> None:
    event = erasure() if signature is None else erasure().model_copy(update={SIGNATURE_ATTRIBUTE: signature})
    assert SIGNER.problem(event) == problem


def test_unsigned_records_are_applied_only_when_timed_before_the_cut_over() -> None:
    cut_over = ErasureSigner(keys=SIGNER.keys, key_id="k2", unsigned_before=SIGNER_SCORE)
    assert cut_over.problem(erasure(minutes_ago=1)) is None
    assert cut_over.problem(erasure()) is not None  # at the moment itself: not before it
    assert SIGNER.problem(erasure(minutes_ago=1)) is not None  # no cut-over: none is


def test_a_signature_that_does_not_verify_is_refused_even_before_the_cut_over() -> None:
    # Only records without a signature are let through: one that claims a signature must carry a good one.
    cut_over = ErasureSigner(keys=SIGNER.keys, key_id="k2", unsigned_before=SIGNER_SCORE)
    forged = erasure(minutes_ago=60).model_copy(update={SIGNATURE_ATTRIBUTE: "k2:" + "A" * 43})
    assert cut_over.problem(forged) == "the erasure record's signature does not match it"


def test_the_signer_does_not_show_its_keys() -> None:
    assert "1111" not in repr(SIGNER)
    assert "k2" in repr(SIGNER)


SIGNER_SCORE = int(NOW.timestamp()) * 1_000_000


def test_settings_name_their_keys_and_the_one_to_sign_with(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "CITIZEN_CONTEXT_SIGNING_KEYS", '{"2026-11": "' + "a" * 32 + '", "2026-12": "' + "b" * 32 + '"}'
    )
    monkeypatch.setenv("CITIZEN_CONTEXT_SIGNING_KEY_ID", "2026-12")
    monkeypatch.setenv("CITIZEN_CONTEXT_SIGNING_UNSIGNED_BEFORE", "2026-12-01T00:00:00Z")
    signer = ErasureSigner.from_settings(SigningSettings())
    assert (sorted(signer.keys), signer.key_id) == (["2026-11", "2026-12"], "2026-12")
    assert signer.unsigned_before == int(datetime(2026, 12, 1, tzinfo=UTC).timestamp()) * 1_000_000


@pytest.mark.parametrize(
    ("environment", "keys", "key_id", "message"),
    [
        ("development", {"a": "x" * 32}, "b", "CITIZEN_CONTEXT_SIGNING_KEY_ID 'b' is not one of the ids of "),
        ("development", {"a:b": "x" * 32}, "a:b", "a key id must be non-empty and hold no ':'"),
        ("production", {"development": DEVELOPMENT_KEY}, "development", "development erasure signing key"),
        (
            "production",
            {"a": "short", "b": "x" * 32},
            "a",
            "at least 32 bytes \\(256 bits\\); shorter: 'a' \\[",
        ),
    ],
)
def test_settings_refuse_keys_that_would_not_serve(
    monkeypatch: pytest.MonkeyPatch, environment: str, keys: dict[str, str], key_id: str, message: str
) -> None:
    monkeypatch.setenv("CITIZEN_CONTEXT_SECURITY_ENVIRONMENT", environment)
    with pytest.raises(ValidationError, match=message):
        SigningSettings(keys=keys, key_id=key_id)


def test_settings_name_every_problem_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITIZEN_CONTEXT_SECURITY_ENVIRONMENT", "production")
    with pytest.raises(ValidationError) as refused:
        SigningSettings(
            keys={"a:1": "short"}, key_id="b", unsigned_before=datetime.now(UTC) + timedelta(minutes=5)
        )
    said = str(refused.value)
    assert "shorter: 'a:1'" in said
    assert "a key id must be non-empty and hold no ':'" in said
    assert "CITIZEN_CONTEXT_SIGNING_KEY_ID 'b' is not one of the ids" in said
    assert "CITIZEN_CONTEXT_SIGNING_UNSIGNED_BEFORE is in the future" in said


def test_a_production_key_id_without_keys_is_told_only_of_the_development_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CITIZEN_CONTEXT_SECURITY_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="development erasure signing key") as refused:
        SigningSettings(keys={"development": DEVELOPMENT_KEY}, key_id="s1")
    assert "is not one of the ids" not in str(refused.value)


@pytest.fixture
def signing_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No signing setting nor deployment environment from the session (or a developer's .env)."""
    for name in [name for name in os.environ if name.startswith("CITIZEN_CONTEXT_SIGNING_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CITIZEN_CONTEXT_SECURITY_ENVIRONMENT", "development")


@pytest.mark.usefixtures("signing_environment")
def test_a_setting_refused_does_not_show_the_keys_in_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITIZEN_CONTEXT_SECURITY_ENVIRONMENT", "production")
    monkeypatch.setenv("CITIZEN_CONTEXT_SIGNING_KEYS", '{"a": "short-but-secret"}')
    monkeypatch.setenv("CITIZEN_CONTEXT_SIGNING_KEY_ID", "a")
    with pytest.raises(ValidationError, match="at least 32 bytes") as refused:
        SigningSettings()
    assert "short-but-secret" not in str(refused.value)


@pytest.mark.usefixtures("signing_environment")
def test_keys_and_ids_swapped_are_refused_without_showing_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "a-production-key-of-enough-length-0123456789"
    monkeypatch.setenv("CITIZEN_CONTEXT_SECURITY_ENVIRONMENT", "production")
    monkeypatch.setenv("CITIZEN_CONTEXT_SIGNING_KEYS", '{"' + key + '": "2026-12"}')
    monkeypatch.setenv("CITIZEN_CONTEXT_SIGNING_KEY_ID", "2026-12")
    with pytest.raises(ValidationError, match="a key in the id's place") as refused:
        SigningSettings()
    assert key not in str(refused.value)


@pytest.mark.usefixtures("signing_environment")
def test_a_cut_over_in_the_future_is_refused() -> None:
    # It would apply unsigned erasures, from anyone, of everything until then.
    with pytest.raises(ValidationError, match="CITIZEN_CONTEXT_SIGNING_UNSIGNED_BEFORE is in the future"):
        SigningSettings(unsigned_before=datetime.now(UTC) + timedelta(minutes=5))


@pytest.mark.usefixtures("signing_environment")
@pytest.mark.parametrize(
    ("settings", "on_loopback", "cautions"),
    [
        ({}, True, []),
        ({"keys": {"a": "x" * 32}, "key_id": "a"}, False, []),
        ({}, False, ["erasure records verify with the development key"]),
        (
            {"unsigned_before": NOW},
            True,
            ["erasure records timed before 2026-12-02T12:00:00+00:00 are applied unsigned"],
        ),
    ],
)
def test_a_process_applying_erasures_is_warned_of_what_lets_others_erase(
    settings: dict[str, Any], on_loopback: bool, cautions: list[str]
) -> None:
    said = signing_cautions(SigningSettings(_env_file=None, **settings), kafka_on_loopback=on_loopback)
    assert len(said) == len(cautions)
    assert all(text.startswith(start) for text, start in zip(said, cautions, strict=True))


@pytest.mark.parametrize(
    ("servers", "on_loopback"),
    [
        ("127.0.0.1:9092", True),
        ("localhost:9092, [::1]:9092", True),
        ("127.0.0.1:9092,kafka.internal:9092", False),
        ("10.0.0.5:9092", False),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("2001:db8::1", False),
    ],
)
def test_kafka_is_on_loopback_only_when_every_bootstrap_server_is(servers: str, on_loopback: bool) -> None:
    assert KafkaSettings(bootstrap_servers=servers).on_loopback is on_loopback


def test_production_takes_long_keys_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITIZEN_CONTEXT_SECURITY_ENVIRONMENT", "production")
    settings = SigningSettings(keys={"2026-12": "k" * 32}, key_id="2026-12")
    assert settings.key_id == "2026-12"


GIVE_KEYS = "give this consumer the API's CITIZEN_CONTEXT_SIGNING_KEYS"


@pytest.mark.parametrize(
    ("problem", "remedy"),
    [
        (UNSIGNED, "set CITIZEN_CONTEXT_SIGNING_UNSIGNED_BEFORE"),
        ("the erasure record's signature does not match it", GIVE_KEYS),
        (
            "the erasure record is signed with a key this process does not hold",
            "give this consumer the API's",
        ),
    ],
)
def test_the_consumer_says_what_to_do_about_an_erasure_it_could_not_verify(problem: str, remedy: str) -> None:
    assert remedy in _unverified_remedy(problem)
    assert _unverified_remedy(problem).endswith("`citizen-context dlq redrive --reason unverified`")
