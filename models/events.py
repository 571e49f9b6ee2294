"""The event contract: CloudEvents 1.0 envelopes that the organisation's services publish."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import SchemaSerializer

# A citizen id ends up inside a Redis hash tag ("{...}") and in URLs, so braces, slashes and spaces are out.
CITIZEN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$"
CitizenId = Annotated[str, StringConstraints(pattern=CITIZEN_ID_PATTERN)]

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"

# RFC 4648 base64 with its padding, as CloudEvents' JSON format requires of `data_base64`.
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"

# Extension attributes that name the citizen when the publisher does not know their id.
IDENTIFIER_ATTRIBUTES = {"citizenphone": "phone", "citizenemail": "email", "citizencaseref": "case"}
# CloudEvents 1.0: attribute names are lower-case ASCII letters and digits (20 characters at most advised).
# (`data_base64`, the JSON format's own member, is declared as a field.)
ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,20}$")
# CloudEvents' Integer type: a signed 32-bit whole number.
INTEGER_MIN, INTEGER_MAX = -(2**31), 2**31 - 1


class CloudEvent(BaseModel):
    """One interaction, as a CloudEvents 1.0 envelope (structured-mode JSON form).

    `id` and `source` together identify the event; `subject` is the citizen; `time` is when it happened.
    A publisher that does not know the citizen's id names them by an identifier extension attribute
    instead (`citizenphone`, `citizenemail`, `citizencaseref`). Other extension attributes are kept.
    """

    # hide_input_in_errors: validation messages reach dead-letter headers and logs; events hold personal data.
    # ser_json_inf_nan: a non-finite number is written as JSON cannot hold it (NaN, Infinity), never as null,
    # so that judging an event finds it (events/codec.py) rather than storing null in its place.
    model_config = ConfigDict(
        extra="allow", frozen=True, hide_input_in_errors=True, ser_json_inf_nan="constants"
    )

    specversion: Literal["1.0"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    source: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    subject: CitizenId | None = None
    time: AwareDatetime
    datacontenttype: str | None = None
    dataschema: str | None = None
    data: Any = Field(default=None, description="Type-specific payload.")
    # CloudEvents' JSON format carries binary data as base64 text here, in place of `data`.
    data_base64: Annotated[str, StringConstraints(pattern=BASE64_PATTERN)] | None = Field(
        default=None,
        description="Binary data, base64-encoded, in place of `data` (types outside the taxonomy).",
    )
    citizenphone: Annotated[str, StringConstraints(min_length=3, max_length=40)] | None = None
    citizenemail: Annotated[str, StringConstraints(min_length=3, max_length=254)] | None = None
    citizencaseref: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _extensions_are_well_formed(self) -> "CloudEvent":
        if self.data_base64 is not None and self.data is not None:
            # CloudEvents' JSON format: one or the other; which one a reader should believe is not said.
            raise ValueError("an event carries data or data_base64, not both")
        extensions = self.__pydantic_extra__
        if not extensions:
            return self  # nearly every event: nothing to look at
        # The messages name no attribute: a name is the publisher's text, and may be personal data (an email
        # address, say), which dead-letter details and logs must not repeat (as hide_input_in_errors).
        for name, value in extensions.items():
            if not ATTRIBUTE_NAME.fullmatch(name):
                raise ValueError("an extension attribute name must be 1-20 lower-case letters or digits")
            if value is not None and not isinstance(value, str | int | bool):
                raise ValueError("an extension attribute must be a string, an integer or a boolean")
        return self

    @field_validator("time", mode="wrap")
    @classmethod
    def _time_is_a_timestamp_within_reason(cls, value: Any, read: ValidatorFunctionWrapHandler) -> datetime:
        # CloudEvents' time is an RFC 3339 string. pydantic would also take a number, as Unix seconds or
        # milliseconds by its size: a guess no publisher should have made for them. (About 0.1 us per event.)
        if not isinstance(value, str | datetime):
            raise ValueError("time must be an RFC 3339 timestamp string")
        moment: datetime = read(value)
        # Scores are microseconds since 1970; a year-0001 or year-9999 typo would still sort, but it is
        # never a real interaction.
        if not 1970 <= moment.year <= 2200:
            raise ValueError("time must be between 1970 and 2200")
        return moment

    @property
    def identifiers(self) -> dict[str, str]:
        """The identifiers this event names the citizen by, as published: kind -> value."""
        return {
            kind: value
            for name, kind in IDENTIFIER_ATTRIBUTES.items()
            if (value := getattr(self, name)) is not None
        }

    @property
    def citizen_id(self) -> str:
        """The citizen's id; only valid once identity resolution has set `subject`."""
        if self.subject is None:
            raise ValueError(f"event {self.id} has not been resolved to a citizen")
        return self.subject

    @property
    def dedup_key(self) -> str:
        """What makes two deliveries the same event: (source, id), unambiguously joined."""
        return f"{len(self.source)}:{self.source}{self.id}"

    @model_serializer(mode="wrap")
    def _omit_absent_attributes(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # An absent optional attribute is left out, as CloudEvents JSON does; `data` is kept as published.
        # With `data_base64`, a null `data` is left out too: CloudEvents' JSON format holds one or the other.
        document: dict[str, Any] = handler(self)
        keep_data = self.data_base64 is None
        return {
            key: value
            for key, value in document.items()
            if value is not None or (key == "data" and keep_data)
        }

    def to_json(self) -> str:
        """The compact structured-mode JSON form, as stored and streamed (as `model_dump_json()`)."""
        # The serializer above builds the whole document as a Python dict, then encodes the dict: on the
        # write path, where every event is encoded once, that cost 3.9 us of the consumer's 31 us per
        # event. The envelope's fields encoded directly, less the absent (None) attributes, take about
        # half; only top-level names are left out, so `data` and anything inside it is encoded as it is.
        # A test holds both to the same output.
        fields = self.__dict__
        absent = {name for name in _OPTIONAL_ATTRIBUTES if fields[name] is None}
        if "data_base64" not in absent and fields["data"] is None:
            absent.add("data")
        if self.__pydantic_extra__:
            absent.update(name for name, value in self.__pydantic_extra__.items() if value is None)
        return _ENVELOPE_FIELDS.to_json(self, exclude=absent).decode()


# The attributes an event may leave out (`data` is kept even when null, as published).
_OPTIONAL_ATTRIBUTES = tuple(
    name for name, field in CloudEvent.model_fields.items() if not field.is_required() and name != "data"
)

# CloudEvent's fields without its serializer (nor its validators, which encoding does not need): its
# instances encode through it as they are.
_ENVELOPE_FIELDS: SchemaSerializer = create_model(  # type: ignore[call-overload]
    "_EnvelopeFields",
    __config__=ConfigDict(extra="allow", frozen=True, ser_json_inf_nan="constants"),
    **{name: (field.annotation, field) for name, field in CloudEvent.model_fields.items()},
).__pydantic_serializer__
