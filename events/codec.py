"""Kafka record -> CloudEvent: the one place where bad input is judged.

Both modes of the CloudEvents Kafka protocol binding are read:
- structured: the whole event is the value (content type `application/cloudevents+json`);
- binary: attributes in `ce_*` headers, `content-type` header for `datacontenttype`, data as the value.
"""

import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from models.events import STRUCTURED_CONTENT_TYPE, CloudEvent

Headers = Sequence[tuple[str, bytes | None]]


class InvalidEvent(Exception):
    """A record that is not a valid event; `reason` is a short stable code, `detail` says what is wrong."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode_record(value: bytes | None, headers: Headers = ()) -> CloudEvent:
    """Decode one Kafka record's value and headers into a CloudEvent, or raise InvalidEvent."""
    header_map = {name.lower(): raw for name, raw in headers}
    if "ce_specversion" in header_map:
        return _decode_binary(value, header_map)
    return _decode_structured(value)


def _decode_structured(value: bytes | None) -> CloudEvent:
    if not value:
        raise InvalidEvent("empty", "the record has no value and no ce_* headers")
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidEvent("not-json", f"the value is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise InvalidEvent("not-an-object", "a structured-mode event must be a JSON object")
    return _validate(document)


def _decode_binary(value: bytes | None, headers: dict[str, bytes | None]) -> CloudEvent:
    document: dict[str, Any] = {}
    for name, raw in headers.items():
        if name.startswith("ce_"):
            try:
                document[name.removeprefix("ce_")] = (raw or b"").decode("utf-8")
            except UnicodeDecodeError as error:
                raise InvalidEvent("bad-header", f"header {name} is not UTF-8") from error
    content_type = headers.get("content-type")
    if content_type is not None:
        document["datacontenttype"] = content_type.decode("utf-8", errors="replace")
    if value is not None:
        document["data"] = _decode_binary_data(value, document.get("datacontenttype"))
    return _validate(document)


def _decode_binary_data(value: bytes, content_type: str | None) -> Any:
    media_type = (content_type or "application/json").split(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            return json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidEvent("not-json", f"the data is declared JSON but is not: {error}") from error
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidEvent("bad-data", f"data of type {media_type} is not UTF-8 text") from error


def _validate(document: dict[str, Any]) -> CloudEvent:
    try:
        return CloudEvent.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'event'}: {item['msg']}"
            for item in error.errors()
        )
        raise InvalidEvent("invalid", problems) from error


def encode_structured(event: CloudEvent) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The value and headers of a structured-mode record for `event`."""
    return event.to_json().encode(), [("content-type", STRUCTURED_CONTENT_TYPE.encode())]
