"""The event contract: CloudEvents 1.0 envelopes that the organisation's services publish."""

from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)

# A citizen id ends up inside a Redis hash tag ("{...}") and in URLs, so braces, slashes and spaces are out.
CITIZEN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$"
CitizenId = Annotated[str, StringConstraints(pattern=CITIZEN_ID_PATTERN)]

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"


class CloudEvent(BaseModel):
    """One interaction, as a CloudEvents 1.0 envelope (structured-mode JSON form).

    `id` and `source` together identify the event; `subject` is the citizen; `time` is when it happened.
    Extension attributes are kept as they came.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    source: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    subject: CitizenId
    time: AwareDatetime
    datacontenttype: str | None = None
    dataschema: str | None = None
    data: Any = Field(default=None, description="Type-specific payload.")

    @property
    def dedup_key(self) -> str:
        """What makes two deliveries the same event: (source, id), unambiguously joined."""
        return f"{len(self.source)}:{self.source}{self.id}"

    @model_serializer(mode="wrap")
    def _omit_absent_attributes(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # An absent optional attribute is left out, as CloudEvents JSON does; `data` is kept as published.
        document: dict[str, Any] = handler(self)
        return {key: value for key, value in document.items() if value is not None or key == "data"}

    def to_json(self) -> str:
        """The compact structured-mode JSON form, as stored and streamed."""
        return self.model_dump_json()
