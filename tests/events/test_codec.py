"""Kafka record -> CloudEvent: both binding modes, and every kind of bad input."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from events.codec import (
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    NON_FINITE,
    InvalidEvent,
    decode_record,
    decode_stored,
    encode_structured,
    judge,
    loads_json,
)
from models.events import CloudEvent
from models.taxonomy import ERASURE_SOURCE, ERASURE_TYPE, EXAMPLE_DATA
from tests.factories import example_data, make_event

VALID = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "/telephony/contact-centre",
    "type": "call.ended",
    "subject": "C-100234",
    "time": "2026-11-28T09:15:00Z",
    "data": {"channel": "phone", "summary": "Asked about HB-4471", "call_id": "CALL-1", "duration_s": 60},
}


def test_structured_round_trip() -> None:
    event = make_event("C-9")
    value, headers = encode_structured(event)
    assert headers == [("content-type", b"application/cloudevents+json")]
    assert decode_record(value, headers) == event


def test_structured_keeps_extension_attributes() -> None:
    event = decode_record(json.dumps({**VALID, "traceparent": "00-abc-01"}).encode())
    assert event.model_extra == {"traceparent": "00-abc-01"}
    assert json.loads(event.to_json())["traceparent"] == "00-abc-01"


@pytest.mark.parametrize("value", [-(2**31), 2**31 - 1, True])
def test_an_extension_integer_within_32_bits_is_kept(value: int) -> None:
    event = decode_record(json.dumps({**VALID, "attempt": value}).encode())
    assert event.model_extra == {"attempt": value}


@pytest.mark.parametrize("value", [-(2**31) - 1, 2**31, 10**30])
def test_an_extension_integer_beyond_32_bits_is_refused(value: int) -> None:
    # CloudEvents' Integer is a signed 32-bit number: one beyond it was kept, and handed on as the event's.
    with pytest.raises(InvalidEvent) as refused:
        decode_record(json.dumps({**VALID, "attempt": value}).encode())
    assert (refused.value.reason, refused.value.detail) == (
        "invalid",
        "an extension attribute's integer must fit in 32 bits, as CloudEvents' do",
    )


def test_an_event_stored_before_the_32_bit_rule_still_reads_back() -> None:
    # The rule is the contract's, judged as an event arrives: a stored event is read with the model alone,
    # and one kept before the rule must still be served.
    stored = json.dumps({**VALID, "attempt": 2**40})
    assert CloudEvent.model_validate_json(stored).model_extra == {"attempt": 2**40}
    with pytest.raises(InvalidEvent, match="must fit in 32 bits"):
        judge(json.loads(stored))  # the REST ingestion's way in


def test_binary_mode_reads_ce_headers() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"evt-2"),
        ("ce_source", b"/payments"),
        ("ce_type", b"payment.failed"),
        ("ce_subject", b"C-100234"),
        ("ce_time", b"2026-11-28T09:15:00+01:00"),
        ("content-type", b"application/json"),
    ]
    data = {"channel": "direct-debit", "summary": "Instalment failed", "amount": "12.50", "reason": "refused"}
    event = decode_record(json.dumps(data).encode(), headers)
    assert (event.id, event.source, event.subject) == ("evt-2", "/payments", "C-100234")
    assert event.datacontenttype == "application/json"
    assert event.data == data
    assert event.time.utcoffset() is not None


@pytest.mark.parametrize("content_type", [b"application/cloudevents+json", b"Application/CloudEvents+JSON"])
def test_a_structured_content_type_means_structured_mode_whatever_other_headers_say(
    content_type: bytes,
) -> None:
    # Some publishers copy the attributes into ce_* headers as well (for routing, tracing): the value is
    # still the whole event, and reading it as binary mode would take the envelope for the data.
    headers = [("content-type", content_type), ("ce_specversion", b"1.0"), ("ce_type", b"misleading.type")]
    event = decode_record(json.dumps(VALID).encode(), headers)
    assert (event.id, event.type, event.data) == ("evt-1", "call.ended", VALID["data"])


def test_ce_headers_without_a_structured_content_type_are_binary_mode() -> None:
    headers = [("ce_specversion", b"1.0"), ("content-type", b"application/json")]
    with pytest.raises(InvalidEvent) as raised:
        decode_record(json.dumps(VALID).encode(), headers)
    # Binary mode: the attributes come from headers, and these name no id, source, type or time.
    assert raised.value.reason == "invalid"
    assert "id" in raised.value.detail


@pytest.mark.parametrize("content_type", [b"", None])
def test_binary_mode_with_an_empty_content_type_is_not_json(content_type: bytes | None) -> None:
    # A content-type header without a value (Kafka allows one) declares nothing, as an empty one does; it
    # is not read as absent, which would declare JSON. The live consumer, a rebuild and a redriven dead
    # letter (which carries the header on with an empty value) must all judge the record alike.
    headers: list[tuple[str, bytes | None]] = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"evt-3"),
        ("ce_source", b"/telephony"),
        ("ce_type", b"call.ended"),
        ("ce_subject", b"C-100234"),
        ("ce_time", b"2026-11-28T09:15:00Z"),
        ("content-type", content_type),
    ]
    with pytest.raises(InvalidEvent) as refused:
        decode_record(json.dumps(example_data("call.ended")).encode(), headers)
    assert refused.value.reason == "invalid-data"
    assert (
        refused.value.detail == "call.ended data must be JSON; its datacontenttype is not a JSON media type"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"\xff\xfe not json", "not-json"),
        (b"{not json", "not-json"),
        (b"[1, 2]", "not-an-object"),
        (json.dumps({**VALID, "specversion": "0.3"}).encode(), "invalid"),
        (json.dumps({**VALID, "subject": "C-1}{x"}).encode(), "invalid"),
        (json.dumps({**VALID, "time": "2026-11-28T09:15:00"}).encode(), "invalid"),
        (json.dumps({**VALID, "time": "yesterday"}).encode(), "invalid"),
        (json.dumps({**VALID, "id": ""}).encode(), "invalid"),
        (json.dumps({**VALID, "time": "0001-01-01T00:00:00Z"}).encode(), "invalid"),
        # CloudEvents' time is an RFC 3339 string: a number is not read as Unix seconds or milliseconds.
        (json.dumps({**VALID, "time": 1796000000}).encode(), "invalid"),
        (json.dumps({**VALID, "time": 1796000000000}).encode(), "invalid"),
        (json.dumps({**VALID, "Bad_Name": "x"}).encode(), "invalid"),
        (json.dumps({**VALID, "nested": {"a": 1}}).encode(), "invalid"),
        (json.dumps({k: v for k, v in VALID.items() if k != "subject"}).encode(), "no-citizen"),
        (
            json.dumps({**VALID, "subject": None, "citizenphone": "not a phone"}).encode(),
            "invalid-identifier",
        ),
        (json.dumps({**VALID, "subject": None, "citizenemail": "nobody"}).encode(), "invalid-identifier"),
        (json.dumps({**VALID, "subject": None, "citizencaseref": "bad ref!"}).encode(), "invalid-identifier"),
        (
            json.dumps({**VALID, "data": {"channel": "phone", "summary": "no call id"}}).encode(),
            "invalid-data",
        ),
        (json.dumps({**VALID, "data": "a string"}).encode(), "invalid-data"),
        (json.dumps({**VALID, "datacontenttype": "text/plain"}).encode(), "invalid-data"),
    ],
)
def test_bad_structured_records_are_rejected_with_a_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_record(value)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_the_reason_names_the_bad_attribute() -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_record(json.dumps({**VALID, "time": "yesterday"}).encode())
    assert caught.value.detail.startswith("time:")


def test_binary_mode_with_bad_json_data_is_rejected() -> None:
    headers = [(f"ce_{k}", str(v).encode()) for k, v in VALID.items() if k != "data"]
    with pytest.raises(InvalidEvent) as caught:
        decode_record(b"{oops", [*headers, ("content-type", b"application/json")])
    assert caught.value.reason == "not-json"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_nan_and_infinity_are_not_json_in_any_mode(number: str) -> None:
    # Python's parser, and pydantic's, take them; stored, they became null: the publisher's data changed.
    structured = json.dumps(VALID).replace('"duration_s": 60', f'"duration_s": {number}').encode()
    with pytest.raises(InvalidEvent) as caught:
        decode_record(structured)
    assert (caught.value.reason, caught.value.detail) == ("not-json", NON_FINITE)
    slow = structured + b" " * 5000  # past the fast path's size
    with pytest.raises(InvalidEvent) as caught:
        decode_record(slow)
    assert (caught.value.reason, caught.value.detail) == ("not-json", NON_FINITE)
    headers = [(f"ce_{k}", str(v).encode()) for k, v in VALID.items() if k != "data"]
    with pytest.raises(InvalidEvent) as caught:
        decode_record(f'{{"v": {number}}}'.encode(), [*headers, ("content-type", b"application/json")])
    assert (caught.value.reason, caught.value.detail) == ("not-json", NON_FINITE)
    # The same words in a text are no number: the event is kept as it came.
    summary = f"{number} owed"
    worded = json.dumps({**VALID, "data": {**VALID["data"], "summary": summary}})  # type: ignore[dict-item]
    assert decode_record(worded.encode()).data["summary"] == summary


def test_why_a_value_is_not_json_is_said_without_quoting_it() -> None:
    cases = {
        b'{"specversion": "1.0", "id": oops}': "the value is not JSON: Expecting value at character 29",
        b'{"specversion": "1.0", "id": "oops}': (
            "the value is not JSON: Unterminated string starting at character 29"
        ),
        b"[" * 100_000: "the value nests too deeply to be read",
        b'{"n": ' + b"9" * 5000 + b"}": "the value holds a number of more than 4300 digits",
    }
    for value, said in cases.items():
        with pytest.raises(InvalidEvent) as caught:
            decode_record(value)
        assert (caught.value.reason, caught.value.detail) == ("not-json", said)


def test_an_event_larger_than_any_kept_is_too_large() -> None:
    def sized(summary_bytes: int) -> bytes:
        document = {**VALID, "type": "note.external", "data": {"summary": "x" * summary_bytes}}
        return json.dumps(document, separators=(",", ":")).encode()

    kept = decode_record(sized(MAX_EVENT_BYTES - 400))
    assert len(kept.to_json().encode()) <= MAX_EVENT_BYTES
    with pytest.raises(InvalidEvent) as caught:
        decode_record(sized(MAX_EVENT_BYTES))
    assert caught.value.reason == "too-large"
    assert caught.value.detail == f"the event's JSON form is larger than {MAX_EVENT_BYTES} bytes"
    # Counted in UTF-8 bytes, not characters: a quarter as many four-byte characters are as large.
    with pytest.raises(InvalidEvent) as caught:
        decode_record(
            json.dumps(
                {**VALID, "type": "note.external", "data": {"s": "😀" * (MAX_EVENT_BYTES // 4)}},
                ensure_ascii=False,
            ).encode()
        )
    assert caught.value.reason == "too-large"


def decode_or_rejection(value: bytes) -> CloudEvent | InvalidEvent:
    """The decoder's verdict; any other exception escapes and fails the test."""
    try:
        return decode_record(value)
    except InvalidEvent as rejection:
        return rejection


@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_crash_the_decoder(value: bytes) -> None:
    verdict = decode_or_rejection(value)
    # Anything that decodes is a valid event by construction (the model validated it).
    assert isinstance(verdict, CloudEvent) or (verdict.reason and verdict.detail)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = (
    json_scalars
    | st.lists(json_scalars, max_size=3)
    | st.dictionaries(st.text(max_size=5), json_scalars, max_size=3)
)

# Each attribute is either missing, its valid value, or anything JSON can hold: both outcomes are drawn.
documents = st.fixed_dictionaries(
    {}, optional={key: st.just(value) | json_values for key, value in {**VALID, "extra": "x"}.items()}
)


@given(documents)
def test_arbitrary_json_objects_are_events_or_rejected_with_a_reason(document: dict[str, object]) -> None:
    verdict = decode_or_rejection(json.dumps(document).encode())
    if isinstance(verdict, InvalidEvent):
        assert verdict.reason in {"invalid", "invalid-data", "no-citizen", "invalid-identifier"}
        assert verdict.detail
    else:
        assert verdict.specversion == "1.0"
        assert verdict.subject == document.get("subject")


OPTIONAL_ATTRIBUTES = {
    "datacontenttype": "application/json",
    "dataschema": "https://example.org/schemas/call.ended",
    "citizenphone": "07700 900123",
    "citizenemail": "a.person@example.org",
    "citizencaseref": "HB-4471",
    "traceparent": "00-abc-01",
    "retries": 2,
    "replayed": True,
}
# Every attribute of the envelope may be there or not, set or null; the data anything JSON holds.
envelopes = st.fixed_dictionaries(
    {key: st.just(value) for key, value in VALID.items() if key != "data"},
    optional={
        "data": json_values | st.dictionaries(st.text(max_size=5), json_values, max_size=3),
        **{key: st.just(value) | st.none() for key, value in OPTIONAL_ATTRIBUTES.items()},
    },
)


@given(envelopes)
def test_the_stored_form_is_the_models_own_json(document: dict[str, object]) -> None:
    # `to_json` takes a shorter way than the model's serializer (the write path's hot spot): same output.
    event = CloudEvent.model_validate(document)
    assert event.to_json() == event.model_dump_json()
    assert CloudEvent.model_validate_json(event.to_json()).to_json() == event.to_json()  # reads back as it is


def test_the_stored_form_keeps_nulls_inside_the_data_whatever_holds_them() -> None:
    class Inner(BaseModel):
        note: str | None = None

    event = CloudEvent.model_validate({**VALID, "time": "2026-11-28T09:15:00+01:00", "traceparent": None})
    resolved = event.model_copy(update={"subject": "C-2", "data": {"inner": Inner(), "n": None}})
    for variant in (event, resolved):
        assert variant.to_json() == variant.model_dump_json()
    assert '"inner":{"note":null},"n":null' in resolved.to_json()


def test_an_event_may_name_the_citizen_by_an_identifier_instead_of_subject() -> None:
    document = {k: v for k, v in VALID.items() if k != "subject"}
    event = decode_record(json.dumps({**document, "citizenphone": "07700 900123"}).encode())
    assert event.subject is None
    assert event.identifiers == {"phone": "07700 900123"}


def test_binary_mode_carries_identifiers_in_headers() -> None:
    headers = [(f"ce_{k}", str(v).encode()) for k, v in VALID.items() if k not in {"data", "subject"}]
    event = decode_record(
        json.dumps(VALID["data"]).encode(), [*headers, ("ce_citizenemail", b"A@Example.org")]
    )
    assert event.identifiers == {"email": "A@Example.org"}


def test_an_unknown_type_is_kept_with_its_data_as_it_came() -> None:
    event = decode_record(json.dumps({**VALID, "type": "parking.permit.issued", "data": [1, "two"]}).encode())
    assert event.type == "parking.permit.issued"
    assert event.data == [1, "two"]


def test_binary_data_in_data_base64_is_kept_as_cloudevents_json_carries_it() -> None:
    # CloudEvents' JSON format: binary data as base64 text, in place of `data`.
    document = {
        **VALID,
        "type": "scan.received",
        "datacontenttype": "application/pdf",
        "data_base64": "JVBERg==",
    }
    del document["data"]
    event, stored = decode_stored(json.dumps(document).encode())
    assert event.data_base64 == "JVBERg=="
    assert event.data is None
    assert json.loads(stored) == document  # no `data` beside it


@pytest.mark.parametrize(
    ("change", "reason", "detail"),
    [
        ({"type": "scan.received", "data_base64": "JVBERg=="}, "invalid", "data or data_base64, not both"),
        ({"type": "scan.received", "data": None, "data_base64": "not base64!"}, "invalid", "data_base64:"),
        ({"type": "scan.received", "data": None, "data_base64": "JVBER"}, "invalid", "data_base64:"),
        ({"data": None, "data_base64": "JVBERg=="}, "invalid-data", "data must be JSON, in data"),
    ],
)
def test_data_base64_is_refused_beside_data_unless_base64_or_for_a_documented_type(
    change: dict[str, object], reason: str, detail: str
) -> None:
    with pytest.raises(InvalidEvent) as refused:
        decode_record(json.dumps({**VALID, **change}).encode())
    assert refused.value.reason == reason
    assert detail in refused.value.detail


@pytest.mark.parametrize("value", [None, b"%PDF"])
@pytest.mark.parametrize(("header", "sent"), [("ce_data_base64", b"JVBERg=="), ("ce_data", b"hello")])
def test_a_data_header_is_no_attribute_of_binary_mode(value: bytes | None, header: str, sent: bytes) -> None:
    # Taken as an attribute, `ce_data` became a null value's data, or was dropped for the value's.
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"evt-1"),
        ("ce_source", b"/scans"),
        ("ce_type", b"scan.received"),
        ("ce_subject", b"C-100234"),
        ("ce_time", b"2026-11-28T09:15:00Z"),
        (header, sent),
    ]
    with pytest.raises(InvalidEvent) as refused:
        decode_record(value, headers)
    assert (refused.value.reason, refused.value.detail) == (
        "invalid",
        f"{header.removeprefix('ce_')} is no attribute: in binary mode the value is the data",
    )


@pytest.mark.parametrize("event_type", sorted(EXAMPLE_DATA))
def test_every_documented_example_is_valid(event_type: str) -> None:
    event = decode_record(
        json.dumps({**VALID, "type": event_type, "data": EXAMPLE_DATA[event_type]}).encode()
    )
    assert event.type == event_type


def slow_verdict(value: bytes) -> CloudEvent | InvalidEvent:
    """What the slow path (the document parsed by `json.loads`, then judged) makes of a record."""
    try:
        document = loads_json(value, what="the value")
    except InvalidEvent as rejection:
        return rejection
    if not isinstance(document, dict):
        return InvalidEvent("not-an-object", "")
    try:
        return judge(document)
    except InvalidEvent as rejection:
        return rejection


def assert_same_verdict(value: bytes) -> None:
    fast, slow = decode_or_rejection(value), slow_verdict(value)
    if isinstance(slow, CloudEvent):
        assert isinstance(fast, CloudEvent)
        # repr, not ==: a NaN in the data is the same verdict, though NaN != NaN.
        assert repr(fast) == repr(slow)
        assert fast.to_json() == slow.to_json()
    else:
        assert isinstance(fast, InvalidEvent)
        assert fast.reason == slow.reason
        if slow.detail:
            assert fast.detail == slow.detail


@given(documents)
def test_the_fast_path_judges_every_document_as_the_slow_path_does(document: dict[str, object]) -> None:
    assert_same_verdict(json.dumps(document).encode())


VALID_JSON = json.dumps(VALID)


@pytest.mark.parametrize(
    "value",
    [
        # JSON that parsers disagree about: both paths must still give one verdict.
        VALID_JSON.replace('"subject": "C-100234"', '"subject": "C-1", "subject": "C-2"').encode(),
        VALID_JSON.replace('"duration_s": 60', '"duration_s": 60, "x": NaN').encode(),
        VALID_JSON.replace('"duration_s": 60', '"duration_s": 60, "x": Infinity').encode(),
        VALID_JSON.replace('"duration_s": 60', '"duration_s": 60, "x": 1e400').encode(),
        VALID_JSON.replace('"duration_s": 60', '"duration_s": 60, "x": 0.1000000000000000055511').encode(),
        VALID_JSON.replace('"duration_s": 60', '"duration_s": 60, "x": "\\ud800"').encode(),
        VALID_JSON.replace('"duration_s": 60', '"duration_s": 60, "x": "\xed\xa0\x80"').encode("latin-1"),
        VALID_JSON.replace('"duration_s": 60', '"duration_s": 60, "x": "\\u0000"').encode(),
        VALID_JSON.replace("}}", '}, "big": ' + "9" * 4000 + "}").encode(),
        b"\xef\xbb\xbf" + VALID_JSON.encode(),
        VALID_JSON.encode() + b" ",
        VALID_JSON.encode() + b" x",
        b" " + VALID_JSON.encode(),
        VALID_JSON.replace("}}", '}, "time": "2026-11-28T09:15:00+01:00"}').encode(),
    ],
)
def test_the_fast_path_agrees_with_the_slow_path_where_json_parsers_differ(value: bytes) -> None:
    assert_same_verdict(value)


@pytest.mark.parametrize("time", [1796000000, 1796000000.5, True, None])
def test_a_time_that_is_not_a_timestamp_string_is_refused_in_plain_words(time: object) -> None:
    # From a record and as REST judges a document (pydantic's JSON and Python modes): the same verdict.
    with pytest.raises(InvalidEvent) as refused:
        decode_record(json.dumps({**VALID, "time": time}).encode())
    assert refused.value.detail == "time: Value error, time must be an RFC 3339 timestamp string"
    with pytest.raises(InvalidEvent) as judged:
        judge({**VALID, "time": time})
    assert judged.value.detail == refused.value.detail


ERASURE = {**VALID, "type": ERASURE_TYPE, "data": {"channel": "system", "summary": "Erased."}}


@pytest.mark.parametrize(
    "source",
    ["/telephony/contact-centre", ERASURE_SOURCE.upper(), f"{ERASURE_SOURCE}/", "/citizen-context/x"],
)
def test_an_erasure_from_any_source_but_the_apis_own_is_reserved(source: str) -> None:
    # Applied, one record from any publisher on the topic would erase a citizen for good (a rebuild replays
    # it). Refused first, whatever else is wrong with it, in either mode.
    for document in (
        {**ERASURE, "source": source},
        {**ERASURE, "source": source, "time": "2200-01-01T00:00:00Z"},
    ):
        with pytest.raises(InvalidEvent) as refused:
            decode_record(json.dumps(document).encode())
        assert refused.value.reason == "reserved"
        assert refused.value.detail == (
            f"{ERASURE_TYPE} is reserved to Citizen Context: it is applied only from {ERASURE_SOURCE}"
        )
    headers = [(f"ce_{k}", str(v).encode()) for k, v in {**ERASURE, "source": source}.items() if k != "data"]
    with pytest.raises(InvalidEvent) as binary:
        decode_record(json.dumps(ERASURE["data"]).encode(), headers)
    assert binary.value.reason == "reserved"


def test_an_erasure_from_the_apis_own_source_is_an_event() -> None:
    event = decode_record(json.dumps({**ERASURE, "source": ERASURE_SOURCE}).encode())
    assert (event.type, event.source) == (ERASURE_TYPE, ERASURE_SOURCE)


def test_details_do_not_repeat_the_publishers_names_or_content_types() -> None:
    # An attribute name, a header name or a content type is the publisher's text: it may be personal data
    # (an email address, say), and dead-letter details end up in logs and tools.
    personal = "anna.jones@example.org"
    bad_name = json.dumps({**VALID, personal: "x"}).encode()
    bad_value = json.dumps({**VALID, "annajones": {"a": 1}}).encode()
    declared = json.dumps({**VALID, "datacontenttype": f"text/{personal}"}).encode()
    binary = [(f"ce_{k}", str(v).encode()) for k, v in VALID.items() if k != "data"]
    not_utf8_header = [*binary, (f"ce_{personal}", b"\xff\xfe")]
    not_utf8_data = [*binary, ("content-type", f"text/{personal}".encode())]
    details = {}
    for name, (value, headers) in {
        "attribute name": (bad_name, []),
        "attribute value": (bad_value, []),
        "content type": (declared, []),
        "header": (json.dumps(VALID["data"]).encode(), not_utf8_header),
        "binary data": (b"\xff\xfe", not_utf8_data),
    }.items():
        with pytest.raises(InvalidEvent) as refused:
            decode_record(value, headers)
        details[name] = (refused.value.reason, refused.value.detail)
    assert details == {
        "attribute name": (
            "invalid",
            "event: Value error, an extension attribute name must be 1-20 lower-case letters or digits",
        ),
        "attribute value": (
            "invalid",
            "event: Value error, an extension attribute must be a string, an integer or a boolean",
        ),
        "content type": (
            "invalid-data",
            "call.ended data must be JSON; its datacontenttype is not a JSON media type",
        ),
        "header": ("bad-header", "a ce_ header is not UTF-8"),
        "binary data": ("bad-data", "data of a content type other than JSON is not UTF-8 text"),
    }


def test_a_member_named_twice_counts_once_as_its_last_value_on_every_path() -> None:
    # JSON leaves a repeated name to the parser: the consumer's fast path (pydantic on the bytes), its slow
    # one (the document first, for a record nested past the quick check) and the API (json.loads, then
    # judge) must all read the same event, and store it with the member once.
    event = make_event("C-TWICE")
    document = json.loads(encode_structured(event)[0])
    text = json.dumps(document)
    twice = text.replace('"id": ', '"id": "first", "id": ', 1).encode()

    fast = decode_record(twice)
    # Brackets in a text count towards the quick check's limit: the document is then walked the slow way.
    deep = decode_record(twice.replace(b"{", b'{"bracketnote": "' + b"[" * (MAX_DEPTH + 1) + b'", ', 1))
    through_the_api = judge(json.loads(twice))

    assert fast.id == deep.id == through_the_api.id == event.id
    stored = fast.to_json()
    assert stored.count('"id":') == 1
    assert '"first"' not in stored


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-16-le"])
def test_a_record_in_another_encoding_than_utf_8_is_refused_as_not_json(encoding: str) -> None:
    # Python's parser reads UTF-16 and UTF-32 too, pydantic's does not: such a record failed the fast path
    # and was accepted on the slow one.
    value = encode_structured(make_event("C-ENCODED"))[0].decode().encode(encoding)

    with pytest.raises(InvalidEvent) as refused:
        decode_record(value)

    assert refused.value.reason == "not-json"


def test_a_record_in_utf_8_with_a_byte_order_mark_is_read() -> None:
    event = make_event("C-BOM")

    assert decode_record(b"\xef\xbb\xbf" + encode_structured(event)[0]).id == event.id
