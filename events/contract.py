"""The event contract, generated from the models: JSON Schemas, Markdown pages and an AsyncAPI document."""

import inspect
import json
import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from context.settings import IdentitySettings
from events.codec import MAX_EVENT_BYTES, InvalidEvent
from events.deadletter import MAX_DETAIL, dead_letter_headers, dead_letter_topic
from events.records import DeadLetter, IncomingRecord
from events.settings import KafkaSettings
from events.signing import SIGNATURE_ATTRIBUTE, UNVERIFIED
from models.events import (
    ATTRIBUTE_NAME,
    IDENTIFIER_ATTRIBUTES,
    INTEGER_MAX,
    INTEGER_MIN,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
)
from models.taxonomy import (
    ERASURE_SOURCE,
    ERASURE_TYPE,
    EVENT_TYPES,
    EXAMPLE_DATA,
    TYPICAL_SOURCES,
    EventData,
)

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ENVELOPE_SCHEMA = "envelope.schema.json"
# Bumped by hand when the contract changes in a way publishers must act on.
CONTRACT_VERSION = "1.0.0"
KAFKA_BINDING_VERSION = "0.5.0"

# The documented defaults, never the environment of whoever runs the generator: docs must not depend on it.
DEFAULT_TOPIC = str(KafkaSettings.model_fields["topic"].default)
DEFAULT_BOOTSTRAP = str(KafkaSettings.model_fields["bootstrap_servers"].default)
DEFAULT_PARTITIONS = int(KafkaSettings.model_fields["topic_partitions"].default)
DEFAULT_GROUP_ID = str(KafkaSettings.model_fields["group_id"].default)
DEFAULT_REGION = str(IdentitySettings.model_fields["default_region"].default)
TOPIC_VARIABLE = f"{KafkaSettings.model_config.get('env_prefix', '')}TOPIC".upper()
REGION_VARIABLE = f"{IdentitySettings.model_config.get('env_prefix', '')}DEFAULT_REGION".upper()

EXAMPLE_SUBJECT = "C-100234"
EXAMPLE_TIME = "2026-11-28T09:15:00Z"
# An appointment is missed after it starts, so its example cannot share the common time.
EXAMPLE_TIMES: dict[str, str] = {}
EXAMPLE_ID_NAMESPACE = "https://citizen-context.example/contract/examples/"

KEY_DESCRIPTION = (
    "The citizen id (the same as `subject`); for an event that names the citizen only by an identifier "
    "attribute, that identifier normalised and prefixed by its kind (`phone:+447700900123`, "
    "`email:anna.jones@example.org`, `case:HB-4471`), so that every spelling of it lands on one partition."
)

ENVELOPE_NOTES = {
    "specversion": "Always `1.0`.",
    "id": "Unique within `source`: `id` and `source` together identify the event.",
    "source": "The publishing service, as a URI reference, e.g. `/telephony/contact-centre`.",
    "type": "One of the types below; other types are accepted and kept as they came.",
    "subject": "The citizen id. Leave it out only when an identifier attribute names the citizen.",
    "time": "When the interaction happened: RFC 3339 with a timezone (`Z` or an offset), years 1970-2200.",
    "datacontenttype": "`application/json` when absent; a documented type's data must be JSON.",
    "dataschema": "URI of the data's schema; kept, not checked.",
    "data": "The type's data, as its page and schema describe; required for a documented type.",
    "data_base64": "Binary data as base64 text, in place of `data` (never both), for a type outside the list "
    "below; a documented type's data is JSON, in `data`.",
    "citizenphone": "The citizen's phone number, when the publisher does not know the citizen id.",
    "citizenemail": "The citizen's email address, when the publisher does not know the citizen id.",
    "citizencaseref": "A case reference of the citizen, when the publisher does not know the citizen id.",
}

IDENTIFIER_NORMALISATION = {
    "phone": "parsed with the default region `{region}` (`{variable}`) when it has no international prefix, "
    "must be a possible number, compared in E.164 (`07700 900123` -> `+447700900123`)",
    "email": "trimmed and lower-cased, must look like `name@domain.tld` (`Anna.Jones@example.org` -> "
    "`anna.jones@example.org`)",
    "case": "trimmed and upper-cased, letters, digits and `/_.-`, up to 64 characters "
    "(`hb-4471` -> `HB-4471`)",
}

REASONS = {
    "empty": "The record has no value and no `ce_*` headers.",
    "not-json": "The value (structured mode), or data declared as JSON (binary mode), is not valid JSON in "
    "UTF-8 (UTF-16 and UTF-32 are refused; a byte order mark is let through); or a number in it is `NaN`, "
    "`Infinity` or too large for a double (`1e400`), which JSON cannot hold. "
    "`dlq.detail` says what (and where, for text the parser cannot read), never quoting the value.",
    "not-an-object": "A structured-mode value is JSON but not a JSON object.",
    "bad-header": "A `ce_*` header is not UTF-8 text.",
    "bad-data": "Binary-mode data of a non-JSON content type is not UTF-8 text.",
    "invalid": "The envelope breaks CloudEvents or this contract; `dlq.detail` names each attribute and why.",
    "reserved": f"A `{ERASURE_TYPE}` from another source than Citizen Context's own (`{ERASURE_SOURCE}`): "
    "only its API records erasures, and the consumer applies none from anyone else.",
    UNVERIFIED: f"A `{ERASURE_TYPE}` from Citizen Context's source without a valid signature of its "
    f"API (the `{SIGNATURE_ATTRIBUTE}` attribute): none, one by a key the consumer does not hold, or one "
    "that does not match the record. The API signs every erasure it records, so one that fails is forged, "
    "or the consumer was not given the API's keys: then give it them and redrive by this reason. A "
    "rebuild skips it.",
    "invalid-data": "A documented type's data is not JSON or breaks its schema; `dlq.detail` says where.",
    "no-citizen": "The event has neither `subject` nor an identifier attribute.",
    "invalid-identifier": "An identifier attribute cannot be normalised (see Identity above).",
    "too-large": f"The event's JSON form is larger than {MAX_EVENT_BYTES // 1024} KiB (see Size above).",
    "unresolved-identity": "The event names the citizen only by identifiers not linked to any citizen yet.",
    "refused": "Redis refused to apply the event: a key of its citizen (or an index entry it teaches) holds "
    "another type or value than Citizen Context writes there, or the apply script failed on it. Not the "
    "publisher's fault: the operators mend the cause, then redrive it.",
    "undecodable": "Reading the record failed in a way none of the other reasons describes.",
    "unreadable": "The Kafka client could not read the record at all (a corrupt batch): the letter holds "
    "only its position (`dlq.topic`, `dlq.partition`, `dlq.offset`).",
}

DEAD_LETTER_HEADERS = {
    "dlq.reason": "The reason code (below).",
    "dlq.detail": f"What is wrong, for people (at most {MAX_DETAIL} characters).",
    "dlq.topic": "The topic the record was read from.",
    "dlq.partition": "Its partition (decimal).",
    "dlq.offset": "Its offset (decimal).",
    "dlq.time": "When it was dead-lettered (RFC 3339).",
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of the envelope and of each type's data, by file name."""
    schemas = {ENVELOPE_SCHEMA: _envelope_file_schema()}
    for event_type, model in EVENT_TYPES.items():
        schemas[_schema_file(event_type)] = _with_header(
            model.model_json_schema(),
            file_name=_schema_file(event_type),
            title=f"{event_type} data",
            description=_docstring(model),
        )
    return schemas


def type_pages() -> dict[str, str]:
    """One Markdown page per documented type, by file name within `types/`."""
    return {f"{event_type}.md": _type_page(event_type, model) for event_type, model in EVENT_TYPES.items()}


def index_page() -> str:
    """The contract's README: topic, key, binding modes, envelope rules, identity, types, dead letters."""
    envelope = CloudEvent.model_json_schema()
    lines = [
        "# Citizen Context event contract",
        "",
        "<!-- Generated from the models by `citizen-context contract`; do not edit by hand. -->",
        "",
        "How the organisation's services publish interactions with citizens so that Citizen Context can show",
        "them to the agent who talks to the citizen next. Events are [CloudEvents 1.0](https://cloudevents.io)",
        "in JSON, published to Kafka.",
        "",
        "Machine-readable forms: [asyncapi.json](asyncapi.json) (AsyncAPI 3.0) and the JSON Schemas in",
        f"[schemas/](schemas/) ([envelope](schemas/{ENVELOPE_SCHEMA}) and one per type).",
        "",
        "## Topic and key",
        "",
        f"- **Topic**: `{DEFAULT_TOPIC}` (a deployment can change it with `{TOPIC_VARIABLE}`).",
        f"- **Key**: {KEY_DESCRIPTION} The key only chooses the partition, so that one citizen's events stay",
        "  in order; Citizen Context reads the citizen from the event, never from the key.",
        "",
        "## Binding modes",
        "",
        "Both modes of the CloudEvents Kafka protocol binding are read. As the binding says, a record",
        "whose `content-type` header starts with `application/cloudevents` is structured mode, whatever",
        "other headers it carries; otherwise a record with a `ce_specversion` header is binary mode, and",
        "any other record structured mode.",
        "",
        f"- **Structured**: the whole event is the value, as one JSON object; header `content-type:"
        f" {STRUCTURED_CONTENT_TYPE}`.",
        "- **Binary**: each attribute is a header named `ce_` and the attribute (`ce_id`, `ce_source`, ...),",
        "  as UTF-8 text; `datacontenttype` is the `content-type` header (`application/json` when absent);",
        "  the value is the data alone. A `ce_data` or `ce_data_base64` header is no attribute (they are the",
        "  JSON format's members): such a record is dead-lettered as `invalid`.",
        "",
        "Each type's page shows the same example in both modes.",
        "",
        "## Envelope",
        "",
        f"[Schema](schemas/{ENVELOPE_SCHEMA})",
        "",
        "| Attribute | Type | Required | Rule |",
        "| --- | --- | --- | --- |",
    ]
    required = set(envelope.get("required", []))
    for name, prop in envelope["properties"].items():
        note = ENVELOPE_NOTES.get(name, prop.get("description", ""))
        lines.append(
            _row(f"`{name}`", _type_text(prop, envelope.get("$defs", {})), _yes(name in required), note)
        )
    lines += [
        "",
        "- **Deduplication**: `id` and `source` identify an event. Publishing it again (a retry, a replay)",
        "  changes nothing while the event is in the citizen's timeline.",
        "- **Subject**: the citizen id, letters, digits and `._:@+-`, starting with a letter or digit, at",
        "  most 128 characters. An event must give `subject` or at least one identifier attribute.",
        "- **Time**: must carry a timezone; an event without one is rejected rather than guessed.",
        "- **Extension attributes**: any other attribute is kept with the event. Names are lower-case ASCII",
        f"  letters and digits, 1-20 characters (`{ATTRIBUTE_NAME.pattern}`); values are scalars (a string,",
        "  an integer within 32 bits, as CloudEvents' Integer, or a boolean), never objects or lists. In",
        "  binary mode every header value is a string.",
        "- **Data**: a documented type's `data` must be JSON and match the type's schema; fields the schema",
        "  does not name are kept as published. Every type's data has `channel` and `summary`.",
        "- **Unknown types**: an event whose `type` is not listed below is accepted and kept in the timeline",
        "  with its data as it came, so a service can publish a new kind of event before Citizen Context",
        "  knows it.",
        f"- **Size**: an event's JSON form is at most {MAX_EVENT_BYTES // 1024} KiB (UTF-8), whatever its",
        "  type: a timeline keeps up to its count cap of events, and every snapshot sends them whole (the",
        "  documented types' events are a few hundred bytes).",
        "- **Numbers**: JSON's only: `NaN`, `Infinity` and numbers too large for a double are refused, never",
        "  stored as `null` in their place.",
        "",
        "## Identity",
        "",
        "A publisher that does not know the citizen id names the citizen by an identifier attribute instead:",
        "",
        "| Attribute | Identifier | Normalisation |",
        "| --- | --- | --- |",
    ]
    for attribute, kind in IDENTIFIER_ATTRIBUTES.items():
        rule = IDENTIFIER_NORMALISATION[kind].format(region=DEFAULT_REGION, variable=REGION_VARIABLE)
        lines.append(_row(f"`{attribute}`", kind, rule))
    teachers = ", ".join(f"`{event_type}`" for event_type in _identifier_teaching_types())
    lines += [
        "",
        "Identifiers are compared after normalisation. An event that has a `subject` links its identifier",
        "attributes to that citizen, and so does the data of these types (its `phone`, `email` or",
        f"`case_ref`): {teachers}. The same field in another type's data, kept as published, links",
        "nothing. When events link one identifier to different citizens, the one with the",
        "later `time` wins, whatever order they arrive in. An event without a `subject` is given the citizen",
        "its identifiers are linked to; when none is, it goes to the dead-letter topic as",
        "`unresolved-identity` and can be redriven once the citizen is known. An identifier that cannot be",
        "normalised rejects the event, with or without a subject.",
        "",
        "Example: a letter for a citizen known only by phone (structured mode, key `phone:+447700900123`).",
        "",
        "```json",
        _pretty(_identifier_example()),
        "```",
        "",
        "## Types",
        "",
        "| Type | Description | Page | Schema |",
        "| --- | --- | --- | --- |",
    ]
    for event_type, model in EVENT_TYPES.items():
        lines.append(
            _row(
                f"`{event_type}`",
                _docstring(model),
                f"[{event_type}](types/{event_type}.md)",
                f"[{_schema_file(event_type)}](schemas/{_schema_file(event_type)})",
            )
        )
    dead_letters = dead_letter_topic(DEFAULT_TOPIC)
    lines += [
        "",
        "## Dead letters",
        "",
        f"A record that cannot be used never stops the consumer: it is published to `{dead_letters}`",
        "(`<topic>.dlq`) unchanged, same key, value and headers, with these headers added (UTF-8 text;",
        "earlier `dlq.*` headers are replaced):",
        "",
        "| Header | Meaning |",
        "| --- | --- |",
    ]
    lines += [_row(f"`{name}`", meaning) for name, meaning in _dead_letter_headers().items()]
    lines += [
        "",
        "Reasons (`dlq.reason`):",
        "",
        "| Reason | Meaning |",
        "| --- | --- |",
    ]
    lines += [_row(f"`{code}`", meaning) for code, meaning in _reasons().items()]
    return "\n".join(lines) + "\n"


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document: the Kafka server, both channels, every type's message, the operations."""
    schemas: dict[str, Any] = {}
    envelope = _component_schema(CloudEvent, schemas)
    _enrich_envelope(envelope)
    schemas["CloudEvent"] = envelope
    messages: dict[str, Any] = {}
    examples = _examples()
    for event_type, model in EVENT_TYPES.items():
        schemas[model.__name__] = _component_schema(model, schemas)
        messages[event_type] = {
            "name": event_type,
            "title": event_type,
            "summary": _docstring(model),
            "contentType": STRUCTURED_CONTENT_TYPE,
            "headers": _structured_headers_schema(),
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/CloudEvent"},
                    {
                        "type": "object",
                        "required": ["type", "data"],
                        "properties": {
                            "type": {"const": event_type},
                            "data": {"$ref": f"#/components/schemas/{model.__name__}"},
                        },
                    },
                ]
            },
            "bindings": {"kafka": {"key": _key_schema(), "bindingVersion": KAFKA_BINDING_VERSION}},
            "examples": [
                {
                    "name": "structured",
                    "summary": f"Record key `{EXAMPLE_SUBJECT}`.",
                    "headers": {"content-type": STRUCTURED_CONTENT_TYPE},
                    "payload": examples[event_type],
                }
            ],
        }
    messages["deadLetter"] = _dead_letter_message()
    dead_letters = dead_letter_topic(DEFAULT_TOPIC)
    interaction_refs = [
        {"$ref": f"#/channels/interactions/messages/{_pointer(name)}"} for name in EVENT_TYPES
    ]
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Citizen Context events",
            "version": CONTRACT_VERSION,
            "description": (
                "CloudEvents 1.0 that the organisation's services publish about their interactions with "
                "citizens, and the dead letters of those Citizen Context cannot use. Generated from the "
                "models by `citizen-context contract`."
            ),
        },
        "defaultContentType": STRUCTURED_CONTENT_TYPE,
        "servers": {
            "local": {
                "host": DEFAULT_BOOTSTRAP,
                "protocol": "kafka",
                "description": "The local broker of `citizen-context services up`.",
            }
        },
        "channels": {
            "interactions": {
                "address": DEFAULT_TOPIC,
                "title": "Interactions",
                "description": f"Every interaction, keyed by citizen; `{TOPIC_VARIABLE}` sets the topic.",
                "servers": [{"$ref": "#/servers/local"}],
                "messages": {
                    name: {"$ref": f"#/components/messages/{_pointer(name)}"} for name in EVENT_TYPES
                },
                "bindings": {
                    "kafka": {
                        "topic": DEFAULT_TOPIC,
                        "partitions": DEFAULT_PARTITIONS,
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }
                },
            },
            "deadLetters": {
                "address": dead_letters,
                "title": "Dead letters",
                "description": "Records of the interactions topic that cannot be used, unchanged, with why.",
                "servers": [{"$ref": "#/servers/local"}],
                "messages": {"deadLetter": {"$ref": "#/components/messages/deadLetter"}},
                "bindings": {"kafka": {"topic": dead_letters, "bindingVersion": KAFKA_BINDING_VERSION}},
            },
        },
        "operations": {
            "publishInteraction": {
                "action": "send",
                "channel": {"$ref": "#/channels/interactions"},
                "title": "Publish an interaction",
                "summary": "A service of the organisation publishes an interaction with a citizen.",
                "messages": interaction_refs,
            },
            "consumeInteractions": {
                "action": "receive",
                "channel": {"$ref": "#/channels/interactions"},
                "title": "Project interactions",
                "summary": "Citizen Context reads every interaction into the citizens' contexts.",
                "messages": interaction_refs,
                "bindings": {
                    "kafka": {
                        "groupId": {"type": "string", "enum": [DEFAULT_GROUP_ID]},
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }
                },
            },
            "deadLetter": {
                "action": "send",
                "channel": {"$ref": "#/channels/deadLetters"},
                "title": "Dead-letter a record",
                "summary": "Citizen Context publishes each record it cannot use, with the reason.",
                "messages": [{"$ref": "#/channels/deadLetters/messages/deadLetter"}],
            },
        },
        "components": {"schemas": schemas, "messages": messages},
    }


def contract_files() -> dict[str, str]:
    """What `write_contract` writes: relative path -> content."""
    files = {"README.md": index_page(), "asyncapi.json": _json_text(asyncapi_document())}
    files.update({f"types/{name}": page for name, page in type_pages().items()})
    files.update({f"schemas/{name}": _json_text(schema) for name, schema in json_schemas().items()})
    return dict(sorted(files.items()))


def write_contract(directory: Path) -> list[Path]:
    """Write the contract under `directory`, remove generated files of types that no longer exist."""
    files = contract_files()
    written = []
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    # Only files matching what this module generates are removed, so nothing else in the folder is at risk.
    for pattern in ("types/*.md", "schemas/*.schema.json"):
        for stale in directory.glob(pattern):
            if stale.relative_to(directory).as_posix() not in files:
                stale.unlink()
    return written


def _schema_file(event_type: str) -> str:
    return f"{event_type}.schema.json"


def _docstring(cls: type) -> str:
    return inspect.cleandoc(cls.__doc__ or "")


def _with_header(schema: dict[str, Any], *, file_name: str, title: str, description: str) -> dict[str, Any]:
    rest = {key: value for key, value in schema.items() if key not in {"title", "description"}}
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": file_name,
        "title": title,
        "description": description,
        **rest,
    }


def _envelope_file_schema() -> dict[str, Any]:
    schema = CloudEvent.model_json_schema()
    _enrich_envelope(schema)
    return _with_header(
        schema,
        file_name=ENVELOPE_SCHEMA,
        title="CloudEvent envelope",
        description=_docstring(CloudEvent),
    )


# The names an envelope's members may have (see _enrich_envelope).
PROPERTY_NAMES = f"^(?:{ATTRIBUTE_NAME.pattern.removeprefix('^').removesuffix('$')}|data_base64)$"


def _enrich_envelope(schema: dict[str, Any]) -> None:
    # The extension rules live in a model validator, which pydantic's schema cannot see. Every name follows
    # them but `data_base64`, the JSON format's own member (propertyNames applies to declared ones too).
    schema["propertyNames"] = {"pattern": PROPERTY_NAMES}
    schema["additionalProperties"] = {
        "description": "An extension attribute: kept with the event.",
        "type": ["string", "integer", "boolean", "null"],
        # Numbers only: an integer fits in 32 bits, as CloudEvents' Integer.
        "minimum": INTEGER_MIN,
        "maximum": INTEGER_MAX,
    }


def _component_schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """The model's schema for `components.schemas`, its definitions hoisted next to it."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        if schemas.setdefault(name, definition) != definition:
            raise ValueError(f"two different schemas are named {name}")
    return schema


def _structured_headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"content-type": {"type": "string", "const": STRUCTURED_CONTENT_TYPE}},
    }


def _key_schema() -> dict[str, Any]:
    return {"type": "string", "description": KEY_DESCRIPTION}


def _dead_letter_message() -> dict[str, Any]:
    headers = _dead_letter_headers()
    properties: dict[str, Any] = {
        name: {"type": "string", "description": text} for name, text in headers.items()
    }
    properties["dlq.reason"]["enum"] = list(_reasons())
    properties["dlq.detail"]["maxLength"] = MAX_DETAIL
    properties["dlq.partition"]["pattern"] = "^-?[0-9]+$"
    properties["dlq.offset"]["pattern"] = "^-?[0-9]+$"
    properties["dlq.time"]["format"] = "date-time"
    return {
        "name": "deadLetter",
        "title": "Dead letter",
        "summary": "A record that cannot be used, unchanged, with why and where it came from.",
        "description": "The key, value and headers are the original record's; the `dlq.*` headers are added.",
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "required": list(headers),
            "properties": properties,
            "additionalProperties": True,
        },
        "payload": {"description": "The original record's value, byte for byte; it may not be JSON."},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The original record's key."},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _dead_letter_headers() -> dict[str, str]:
    """The headers the dead-letter code adds, in its order, each with its meaning."""
    record = IncomingRecord(topic=DEFAULT_TOPIC, partition=0, offset=0, key=None, value=None)
    names = [name for name, _raw in dead_letter_headers(DeadLetter(record, "empty", ""))]
    missing = [name for name in names if name not in DEAD_LETTER_HEADERS]
    if missing or len(names) != len(DEAD_LETTER_HEADERS):
        raise ValueError(f"events.contract.DEAD_LETTER_HEADERS is out of step with the code: {names}")
    return {name: DEAD_LETTER_HEADERS[name] for name in names}


def _reasons() -> dict[str, str]:
    """The reason codes of InvalidEvent's docstring, in its order, each with its meaning."""
    listed = _docstring(InvalidEvent).partition("Reasons:")[2]
    codes = re.findall(r"`([a-z][a-z-]*)`", listed)
    if set(codes) != set(REASONS):
        raise ValueError(f"events.contract.REASONS is out of step with InvalidEvent's docstring: {codes}")
    return {code: REASONS[code] for code in codes}


def _identifier_teaching_types() -> list[str]:
    fields = {"phone", "email", "case_ref"}
    return [event_type for event_type, model in EVENT_TYPES.items() if fields & set(model.model_fields)]


def _example_document(event_type: str, data: Any) -> dict[str, Any]:
    prefix = event_type.split(".", 1)[0]
    document = {
        "specversion": "1.0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, EXAMPLE_ID_NAMESPACE + event_type)),
        "source": TYPICAL_SOURCES.get(prefix, f"/{prefix}"),
        "type": event_type,
        "subject": EXAMPLE_SUBJECT,
        "time": EXAMPLE_TIMES.get(event_type, EXAMPLE_TIME),
        "datacontenttype": "application/json",
        "data": data,
    }
    # Through the model, so that an example the envelope would reject fails here rather than in the docs.
    return CloudEvent.model_validate(document).model_dump(mode="json")


def _examples() -> dict[str, dict[str, Any]]:
    return {event_type: _example_document(event_type, EXAMPLE_DATA[event_type]) for event_type in EVENT_TYPES}


def _identifier_example() -> dict[str, Any]:
    document = _example_document("letter.sent", EXAMPLE_DATA["letter.sent"])
    del document["subject"]
    document["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, EXAMPLE_ID_NAMESPACE + "identifier"))
    document["citizenphone"] = "07700 900123"
    return document


def _type_page(event_type: str, model: type[EventData]) -> str:
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    schema_file = _schema_file(event_type)
    lines = [
        f"# `{event_type}`",
        "",
        "<!-- Generated from the models by `citizen-context contract`; do not edit by hand. -->",
        "",
        _docstring(model),
        "",
        f"Data schema: [{schema_file}](../schemas/{schema_file}). Envelope, key, identity attributes and",
        "dead letters: [the contract](../README.md).",
        "",
        "## Data",
        "",
        "| Field | Type | Required | Description |",
        "| --- | --- | --- | --- |",
    ]
    for name, prop in schema["properties"].items():
        field = model.model_fields[name]
        description = prop.get("description", "")
        if name not in required and prop.get("default") is not None:
            description = f"{description} Default `{json.dumps(prop['default'])}`.".strip()
        lines.append(
            _row(
                f"`{name}`",
                _field_type_text(prop, defs, field.annotation, field.metadata),
                _yes(name in required),
                description,
            )
        )
    if model.model_config.get("extra") == "allow":
        lines += ["", "Further fields are kept as published."]
    example = _examples()[event_type]
    lines += [
        "",
        "## Example: structured mode",
        "",
        f"Key `{EXAMPLE_SUBJECT}`, header `content-type: {STRUCTURED_CONTENT_TYPE}`, value:",
        "",
        "```json",
        _pretty(example),
        "```",
        "",
        "## Example: binary mode",
        "",
        f"Key `{EXAMPLE_SUBJECT}`, headers:",
        "",
        "| Header | Value |",
        "| --- | --- |",
    ]
    lines += [_row(f"`{name}`", f"`{value}`") for name, value in _binary_headers(example)]
    lines += [
        "",
        "Value (the data alone):",
        "",
        "```json",
        _pretty(example["data"]),
        "```",
    ]
    return "\n".join(lines) + "\n"


def _binary_headers(document: dict[str, Any]) -> list[tuple[str, str]]:
    headers = [
        (f"ce_{name}", str(value))
        for name, value in document.items()
        if name not in {"data", "datacontenttype"} and value is not None
    ]
    if "datacontenttype" in document:
        headers.append(("content-type", str(document["datacontenttype"])))
    return headers


def _field_type_text(prop: dict[str, Any], defs: dict[str, Any], annotation: Any, metadata: list[Any]) -> str:
    if annotation is not Decimal:
        return _type_text(prop, defs)
    # Pydantic's schema says "number or string" and drops the digit limits; the string form is the exact one.
    limits = []
    for item in metadata:
        if getattr(item, "gt", None) is not None:
            limits.append(f"> {item.gt}")
        if getattr(item, "max_digits", None) is not None:
            limits.append(f"at most {item.max_digits} digits")
        if getattr(item, "decimal_places", None) is not None:
            limits.append(f"{item.decimal_places} decimal places")
    limits.append('a string like `"142.00"`; a number is accepted')
    return f"decimal ({', '.join(limits)})"


def _type_text(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A short human reading of a JSON Schema, for the field tables."""
    if "$ref" in schema:
        return _type_text(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "anyOf" in schema:
        return " or ".join(_type_text(branch, defs) for branch in schema["anyOf"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    kind = schema.get("type")
    if kind is None:
        return "any JSON value"
    if kind == "array":
        return f"list of {_type_text(schema.get('items', {}), defs)}"
    limits = []
    if schema.get("format") == "date-time":
        limits.append("RFC 3339 date-time with timezone")
    if "pattern" in schema:
        limits.append(f"matching `{schema['pattern']}`")
    if "minLength" in schema or "maxLength" in schema:
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        limits.append(f"{low}-{high} characters" if high is not None else f"at least {low} characters")
    for keyword, sign in (
        ("exclusiveMinimum", ">"),
        ("minimum", ">="),
        ("exclusiveMaximum", "<"),
        ("maximum", "<="),
    ):
        if keyword in schema:
            limits.append(f"{sign} {schema[keyword]}")
    return str(kind) + (f" ({', '.join(limits)})" if limits else "")


def _row(*cells: str) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _pointer(name: str) -> str:
    """`name` as one JSON Pointer token."""
    return name.replace("~", "~0").replace("/", "~1")


def _pretty(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def _json_text(document: Any) -> str:
    return _pretty(document) + "\n"
