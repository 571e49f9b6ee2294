"""Kafka record -> CloudEvent: the one place where bad input is judged.

Both modes of the CloudEvents Kafka protocol binding are read:
- structured: the whole event is the value (content type `application/cloudevents+json`);
- binary: attributes in `ce_*` headers, `content-type` header for `datacontenttype`, data as the value.
As the binding says, a `content-type` of the CloudEvents media type (`application/cloudevents...`) means
structured mode, whatever other headers the record carries; otherwise a `ce_specversion` header means binary
mode, and a record with neither is read as structured.
"""

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from context.identity import InvalidIdentifier, named_identifiers
from context.timeline import time_score
from models.events import INTEGER_MAX, INTEGER_MIN, STRUCTURED_CONTENT_TYPE, CloudEvent
from models.taxonomy import ERASURE_SOURCE, ERASURE_TYPE, EVENT_TYPES, EventData, parse_data

Headers = Sequence[tuple[str, bytes | None]]


class InvalidEvent(Exception):
    """A record that is not a valid event; `reason` is a short stable code, `detail` says what is wrong.

    Reasons: `empty`, `not-json`, `not-an-object`, `bad-header`, `bad-data` (the record cannot be read);
    `invalid` (the envelope breaks CloudEvents or this contract), `reserved` (a type only Citizen Context
    publishes, from another source), `invalid-data` (a documented type's data breaks its schema),
    `no-citizen` (neither a subject nor an identifier), `invalid-identifier`, `too-large` (larger than any
    event is kept, MAX_EVENT_BYTES).
    The batch pipeline adds `unverified` (an erasure record without the API's signature, events/signing.py),
    `unresolved-identity`, `refused` (Redis refuses to apply the event), and
    `undecodable` for any other failure a record causes;
    the consumer `unreadable` for a record not even a second, lenient reading can read (events/unreadable.py).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


DEFAULT_REGION = "GB"
# Real events nest a few levels; a limit far below the parsers' own keeps every later step safe.
MAX_DEPTH = 32
# Records up to this size may take the fast path: no integer in them can reach the 4,300 digits past which
# `json.loads` refuses to convert one (the slow path's `not-json`), so both paths agree on every record.
FAST_PATH_MAX_BYTES = 4096
JSON = "application/json"
# Publishers' clocks drift, but an event dated days ahead would stay "latest" and never age out.
MAX_CLOCK_SKEW = timedelta(days=1)
# The largest event kept, as its JSON form. A timeline holds up to its count cap of events, and every
# snapshot sends them whole: one publisher's oversized events (a type outside the taxonomy, or fields
# beyond a documented type's, are kept as they came) would make a citizen's context too large to read or to
# stream. The documented types' events are a few hundred bytes.
MAX_EVENT_BYTES = 32 * 1024


def loads_json(text: bytes | str, *, what: str) -> Any:
    """`text` parsed as JSON, or InvalidEvent (`not-json`) saying why not, never quoting it (`what`: "the
    value", "the data", "the body"). NaN and Infinity, which Python's parser takes besides JSON, are left to
    `_judge_valid`, which refuses them wherever they came from."""
    try:
        # UTF-8 only, as JSON between systems must be (RFC 8259); a byte order mark is let through, as that
        # RFC lets parsers do. Python's parser takes bytes in UTF-16 and UTF-32 as well, which pydantic's (the
        # consumer's fast path) does not: such a record was accepted on the slow path alone.
        return json.loads(text.decode("utf-8-sig") if isinstance(text, bytes) else text)
    except (RecursionError, ValueError) as error:
        reason = unreadable_json(error, what=what)
        if reason is None:
            raise
        raise InvalidEvent("not-json", reason) from error


def unreadable_json(error: BaseException, *, what: str) -> str | None:
    """Why Python's JSON parser could not read a text (`what`: "the value", "The body"), from the error it
    raised, never quoting the text; None for an error that is not about the text. The API says the same of a
    body the framework could not read (api/problems.py)."""
    if isinstance(error, RecursionError):
        # Nesting deep enough to exhaust the parser: bad input, never a reason to stop.
        return f"{what} nests too deeply to be read"
    if isinstance(error, json.JSONDecodeError):
        # The parser's own words (what it expected) and where: neither quotes the text.
        # (Some of the parser's messages end in "at" already: "Unterminated string starting at".)
        return f"{what} is not JSON: {error.msg.removesuffix(' at')} at character {error.pos}"
    if isinstance(error, UnicodeDecodeError):  # a ValueError too: told apart first
        return f"{what} is not UTF-8"
    if isinstance(error, ValueError):
        # Python refuses to convert an integer of more digits than its limit (4,300); its own message
        # tells a programmer how to raise the limit, which means nothing to a publisher.
        return f"{what} holds a number of more than {sys.get_int_max_str_digits()} digits"
    return None


NON_FINITE = "a number is NaN or infinite (or too large), which JSON cannot hold"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _holds_non_finite(stored: str) -> bool:
    """Whether an event's JSON form holds NaN or Infinity as a number (not merely those words in a text)."""
    try:
        json.loads(stored, parse_constant=_refuse_constant)
    except ValueError:
        return True
    return False


def decode_record(
    value: bytes | None, headers: Headers = (), *, default_region: str = DEFAULT_REGION
) -> CloudEvent:
    """Decode one Kafka record's value and headers into a CloudEvent, or raise InvalidEvent."""
    return decode_stored(value, headers, default_region=default_region)[0]


@dataclass(slots=True)  # not frozen: see events/records.py
class Decoded:
    """A judged event, with what judging it computed anyway: its stored JSON form, its typed data and its
    time's score."""

    event: CloudEvent
    stored: str
    # The data as its type's model; None for a type outside the taxonomy (kept as it came).
    data: EventData | None
    # `time_score(event.time)`, computed once: a datetime as pydantic parses it has pydantic's own time zone
    # type, whose offset is looked up through a method call in every comparison and conversion.
    score: int


def decode_stored(
    value: bytes | None, headers: Headers = (), *, default_region: str = DEFAULT_REGION
) -> tuple[CloudEvent, str]:
    """As `decode_record`, with the event's stored JSON form (judging computes it anyway)."""
    decoded = decode_judged(value, headers, default_region=default_region)
    return decoded.event, decoded.stored


def future_horizon() -> int:
    """The latest event time accepted now, as a timeline score (see MAX_CLOCK_SKEW)."""
    return time_score(datetime.now(UTC) + MAX_CLOCK_SKEW)


def decode_judged(
    value: bytes | None,
    headers: Headers = (),
    *,
    default_region: str = DEFAULT_REGION,
    horizon: int | None = None,
) -> Decoded:
    """As `decode_record`, with everything judging computed (for the write path).

    `horizon` is the latest event time to accept (`future_horizon()`, the default): a batch reads the
    clock once for all its records, where reading it per record was a thirtieth of the consumer's time.
    """
    horizon = future_horizon() if horizon is None else horizon
    header_map = {name.lower(): raw for name, raw in headers} if headers else {}
    if "ce_specversion" in header_map and not _declares_structured(header_map.get("content-type")):
        return _judge(
            _binary_document(value, header_map), default_region=default_region, shallow=False, horizon=horizon
        )
    # Fewer brackets in the whole record than the depth limit: it cannot nest deeper (brackets inside
    # strings only add to the count), so the walk over the document is skipped for nearly every event.
    shallow = value is not None and value.count(b"{") + value.count(b"[") <= MAX_DEPTH
    if shallow and value is not None and len(value) <= FAST_PATH_MAX_BYTES:
        # The fast path: pydantic parses and validates the bytes in one pass, without building the
        # document as Python objects first (half the cost of decoding a valid event). Only a record
        # that passes is taken from here; anything else is judged again below, the slow way, so every
        # rejection keeps its reason (`not-json`, `not-an-object`, `invalid`, ...).
        try:
            event = CloudEvent.model_validate_json(value)
        except ValueError:
            pass
        else:
            return _judge_valid(event, default_region=default_region, horizon=horizon, read_back=False)
    return _judge(
        _structured_document(value), default_region=default_region, shallow=shallow, horizon=horizon
    )


# The binding's prefix of a structured-mode content type (application/cloudevents+json, ...).
_STRUCTURED_PREFIX = b"application/cloudevents"


def _declares_structured(content_type: bytes | None) -> bool:
    """Whether a record's `content-type` header declares structured mode (media types ignore case)."""
    return content_type is not None and content_type[: len(_STRUCTURED_PREFIX)].lower() == _STRUCTURED_PREFIX


def _structured_document(value: bytes | None) -> dict[str, Any]:
    if not value:
        raise InvalidEvent("empty", "the record has no value and no ce_* headers")
    document = loads_json(value, what="the value")
    if not isinstance(document, dict):
        raise InvalidEvent("not-an-object", "a structured-mode event must be a JSON object")
    return document


# Headers named after the JSON format's data members, which binary mode carries in the record's value: taken
# as attributes, `ce_data` would become a null value's data, or be dropped for the value's.
_NOT_ATTRIBUTES = frozenset({"ce_data", "ce_data_base64"})


def _binary_document(value: bytes | None, headers: dict[str, bytes | None]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for name, raw in headers.items():
        if name in _NOT_ATTRIBUTES:
            # The JSON format's members, not attributes: in binary mode the data is the record's value.
            raise InvalidEvent(
                "invalid", f"{name.removeprefix('ce_')} is no attribute: in binary mode the value is the data"
            )
        if name.startswith("ce_"):
            try:
                document[name.removeprefix("ce_")] = (raw or b"").decode("utf-8")
            except UnicodeDecodeError as error:
                # Not the header's name: a publisher's text, which may be personal data (as its value may).
                raise InvalidEvent("bad-header", "a ce_ header is not UTF-8") from error
    if "content-type" in headers:
        # A header without a value (Kafka allows one) declares an empty content type, as an empty value
        # does: it is not left out, which would declare JSON (the default).
        content_type = headers["content-type"] or b""
        document["datacontenttype"] = content_type.decode("utf-8", errors="replace")
    if value is not None:
        document["data"] = _decode_binary_data(value, document.get("datacontenttype"))
    return document


def _decode_binary_data(value: bytes, content_type: str | None) -> Any:
    media_type = media_type_of(content_type or None)
    if is_json(media_type):
        return loads_json(value, what="the data, declared JSON,")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidEvent("bad-data", "data of a content type other than JSON is not UTF-8 text") from error


def judge(document: dict[str, Any], *, default_region: str = DEFAULT_REGION) -> CloudEvent:
    """A decoded JSON document as a valid event of the contract, or InvalidEvent saying why not.

    The consumer and the REST ingestion both judge events here, so they accept exactly the same ones.
    """
    return _judge(document, default_region=default_region, shallow=False, horizon=future_horizon()).event


def _judge(document: dict[str, Any], *, default_region: str, shallow: bool, horizon: int) -> Decoded:
    if not shallow and _depth(document) > MAX_DEPTH:
        raise InvalidEvent("invalid", f"the event is nested deeper than {MAX_DEPTH} levels")
    try:
        event = CloudEvent.model_validate(document)
    except ValidationError as error:
        raise InvalidEvent("invalid", _problems(error)) from error
    return _judge_valid(event, default_region=default_region, horizon=horizon)


def _integers_fit(extensions: dict[str, Any]) -> bool:
    """Whether every integer among extension attributes is one of CloudEvents' (signed, 32 bits)."""
    return all(INTEGER_MIN <= value <= INTEGER_MAX for value in extensions.values() if type(value) is int)


def _judge_valid(event: CloudEvent, *, default_region: str, horizon: int, read_back: bool = True) -> Decoded:
    """The contract's checks beyond the envelope's model, on an event that passed the model.

    `read_back=False` is for an event validated from JSON bytes by the model itself: every value in it
    came from its parser (valid Unicode; numbers, the non-finite ones refused below), so its stored form
    reads back as it is, and reading it back again would only repeat a tenth of the consumer's work per
    event.
    """
    if event.type == ERASURE_TYPE and event.source != ERASURE_SOURCE:
        # Only the API records an erasure (a citizen's request, with its own scope). Applied from any other
        # publisher on the topic, one record would erase a citizen for good: every rebuild replays it. Said
        # first, whatever else is wrong with the event: no correction would let the publisher send it.
        raise InvalidEvent(
            "reserved",
            f"{ERASURE_TYPE} is reserved to Citizen Context: it is applied only from {ERASURE_SOURCE}",
        )
    score = time_score(event.time)
    if score > horizon:
        raise InvalidEvent("invalid", "time: is in the future (beyond the allowed clock skew of one day)")
    if event.__pydantic_extra__ and not _integers_fit(event.__pydantic_extra__):
        # Here, as an event arrives, not in the model: events stored before this rule are read back as kept.
        raise InvalidEvent(
            "invalid", "an extension attribute's integer must fit in 32 bits, as CloudEvents' do"
        )
    try:
        # What is accepted must be storable and readable back: this catches lone surrogates and other
        # values JSON cannot carry faithfully, which would otherwise fail later, inside the write path.
        stored = event.to_json()
        # Said before anything else is read in it: a large event is refused for what it costs.
        if len(stored) > MAX_EVENT_BYTES // 4 and len(stored.encode()) > MAX_EVENT_BYTES:
            # (Under a quarter of the limit in characters, it cannot reach it in UTF-8: nearly every event.)
            raise InvalidEvent("too-large", f"the event's JSON form is larger than {MAX_EVENT_BYTES} bytes")
        if ("NaN" in stored or "Infinity" in stored) and _holds_non_finite(stored):
            # NaN and Infinity, which Python's and pydantic's parsers take, and numbers too large for a
            # double (1e400): no JSON holds them, and stored they became null, the publisher's data changed.
            raise InvalidEvent("not-json", NON_FINITE)
        if read_back:
            CloudEvent.model_validate_json(stored)
    except (ValueError, PydanticSerializationError) as error:
        raise InvalidEvent(
            "invalid", f"the event cannot be stored as JSON: {type(error).__name__}"
        ) from error
    if event.subject is None and not event.identifiers:
        raise InvalidEvent(
            "no-citizen",
            "the event names no citizen: give subject, citizenphone, citizenemail or citizencaseref",
        )
    try:
        named_identifiers(event, default_region=default_region)
    except InvalidIdentifier as error:
        raise InvalidEvent("invalid-identifier", str(error)) from error
    data = None
    if event.type in EVENT_TYPES:
        if event.data_base64 is not None:
            raise InvalidEvent(
                "invalid-data", f"{event.type} data must be JSON, in data; data_base64 carries binary data"
            )
        content_type = event.datacontenttype
        # Nearly every event declares JSON as "application/json" or not at all: no need to parse that.
        if content_type is not None and content_type != JSON and not is_json(media_type_of(content_type)):
            # Not the content type itself: a publisher's text, of any length, which details must not repeat.
            raise InvalidEvent(
                "invalid-data",
                f"{event.type} data must be JSON; its datacontenttype is not a JSON media type",
            )
        try:
            data = parse_data(event.type, event.data)
        except ValidationError as error:
            raise InvalidEvent("invalid-data", _problems(error, prefix="data")) from error
    return Decoded(event, stored, data, score)


def media_type_of(content_type: str | None) -> str:
    """The media type of a `datacontenttype` or `Content-Type`, lower-case, without parameters (JSON when
    absent)."""
    if content_type is None or content_type == JSON:
        return JSON  # nearly every event: the general form below costs more than the rest
    return content_type.split(";")[0].strip().lower()


def is_json(media_type: str) -> bool:
    """Whether a media type (as `media_type_of` gives it) is JSON: `application/json` or any `+json`."""
    return media_type == JSON or media_type.endswith("+json")


def _depth(value: Any, level: int = 0) -> int:
    """How deeply a decoded JSON value nests (stops counting past the limit)."""
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(item, level + 1) for item in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(item, level + 1) for item in value), default=level + 1)
    return level


def _problems(error: ValidationError, prefix: str = "") -> str:
    def location(loc: tuple[int | str, ...]) -> str:
        return ".".join(str(part) for part in (prefix, *loc) if part != "") or "event"

    return "; ".join(f"{location(item['loc'])}: {item['msg']}" for item in error.errors())


def encode_structured(event: CloudEvent) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The value and headers of a structured-mode record for `event`."""
    return event.to_json().encode(), [("content-type", STRUCTURED_CONTENT_TYPE.encode())]
