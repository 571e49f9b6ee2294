"""The generated event contract: in step with the models, with examples the codec accepts."""

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest

from events.codec import decode_record
from events.contract import (
    asyncapi_document,
    contract_files,
    index_page,
    json_schemas,
    type_pages,
    write_contract,
)
from models.events import STRUCTURED_CONTENT_TYPE
from models.taxonomy import EVENT_TYPES

CONTRACT_DIR = Path(__file__).resolve().parents[2] / "docs" / "contract"
REGENERATE = "run `citizen-context contract` to regenerate docs/contract"
JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


def _section(page: str, heading: str) -> str:
    """The text of a `## heading` section, up to the next one."""
    return page.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _json_blocks(text: str) -> list[Any]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", text, flags=re.DOTALL)]


def _table(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in `text`, each cell stripped of backticks."""
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip().strip("`") for cell in row.strip().strip("|").split(" | ")] for row in rows[2:]]


def test_committed_contract_matches_the_models() -> None:
    expected = contract_files()
    committed = {
        path.relative_to(CONTRACT_DIR).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(CONTRACT_DIR.rglob("*"))
        if path.is_file()
    }
    missing = sorted(expected.keys() - committed.keys())
    extra = sorted(committed.keys() - expected.keys())
    changed = sorted(name for name in expected.keys() & committed.keys() if expected[name] != committed[name])
    problems = {"missing": missing, "not generated": extra, "changed": changed}
    assert not any(problems.values()), (
        f"docs/contract is out of step with the models ({REGENERATE}): {problems}"
    )


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_type_page_examples_are_accepted_by_the_codec(event_type: str) -> None:
    page = type_pages()[f"{event_type}.md"]
    [structured] = _json_blocks(_section(page, "Example: structured mode"))
    event = decode_record(json.dumps(structured).encode())
    assert (event.type, event.subject) == (event_type, "C-100234")
    assert event.data == structured["data"]

    binary_section = _section(page, "Example: binary mode")
    headers = [(name, value.encode()) for name, value in _table(binary_section)]
    [data] = _json_blocks(binary_section)
    assert decode_record(json.dumps(data).encode(), headers) == event


def test_index_page_identifier_example_is_accepted_by_the_codec() -> None:
    [example] = _json_blocks(_section(index_page(), "Identity"))
    event = decode_record(json.dumps(example).encode())
    assert event.subject is None
    assert event.identifiers == {"phone": "07700 900123"}


def test_index_page_lists_every_type_and_reason() -> None:
    page = index_page()
    types = [row[0] for row in _table(_section(page, "Types"))]
    assert types == list(EVENT_TYPES)
    reasons = {row[0] for row in _table(_section(page, "Dead letters").split("Reasons", 1)[1])}
    assert {"invalid", "invalid-data", "no-citizen", "unresolved-identity"} <= reasons


def _check_schema(node: Any, root: dict[str, Any], where: str) -> None:
    """Structural checks of one JSON Schema node and everything below it."""
    if isinstance(node, bool):
        return
    assert isinstance(node, dict), f"{where}: a schema is an object or a boolean"
    if "type" in node:
        kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
        assert set(kinds) <= JSON_TYPES, f"{where}: unknown type {node['type']}"
    if "$ref" in node:
        assert node["$ref"].startswith("#/"), f"{where}: only local references are expected"
        target: Any = root
        for token in node["$ref"][2:].split("/"):
            target = target[token.replace("~1", "/").replace("~0", "~")]
        assert isinstance(target, dict), f"{where}: {node['$ref']} does not resolve to a schema"
    if "pattern" in node:
        re.compile(node["pattern"])
    if "enum" in node:
        assert isinstance(node["enum"], list), f"{where}: enum is a list"
        assert node["enum"], f"{where}: enum is not empty"
    if "required" in node:
        assert all(isinstance(name, str) for name in node["required"])
        assert set(node["required"]) <= set(node.get("properties", {})), f"{where}: required but not defined"
    for keyword in ("properties", "$defs"):
        for name, child in node.get(keyword, {}).items():
            _check_schema(child, root, f"{where}/{keyword}/{name}")
    for keyword in ("anyOf", "allOf", "oneOf"):
        assert isinstance(node.get(keyword, []), list), f"{where}: {keyword} is a list"
        for index, child in enumerate(node.get(keyword, [])):
            _check_schema(child, root, f"{where}/{keyword}/{index}")
    for keyword in ("items", "additionalProperties", "propertyNames"):
        if keyword in node:
            _check_schema(node[keyword], root, f"{where}/{keyword}")


def test_schema_files_are_json_schemas() -> None:
    schemas = json_schemas()
    assert set(schemas) == {"envelope.schema.json"} | {f"{name}.schema.json" for name in EVENT_TYPES}
    for name, schema in schemas.items():
        assert schema["$id"] == name
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["title"]
        assert schema["description"]
        assert "type" in schema or "properties" in schema or "$defs" in schema
        _check_schema(schema, schema, name)
    for name, model in EVENT_TYPES.items():
        schema = schemas[f"{name}.schema.json"]
        assert schema["description"] == inspect.getdoc(model)
        assert set(schema["properties"]) == set(model.model_fields)


def test_envelope_schema_states_the_extension_rules() -> None:
    envelope = json_schemas()["envelope.schema.json"]
    assert envelope["propertyNames"] == {"pattern": "^(?:[a-z0-9]{1,20}|data_base64)$"}
    assert "object" not in envelope["additionalProperties"]["type"]
    names = envelope["propertyNames"]["pattern"]
    assert all(re.fullmatch(names, name) for name in envelope["properties"])
    assert not [name for name in ("data_x", "Data", "a" * 21, "") if re.fullmatch(names, name)]


def _resolve(document: dict[str, Any], reference: str) -> Any:
    target: Any = document
    for token in reference.removeprefix("#/").split("/"):
        target = target[token.replace("~1", "/").replace("~0", "~")]
    return target


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _references(value)]
    return []


def test_asyncapi_document() -> None:
    document = asyncapi_document()
    assert document["asyncapi"] == "3.0.0"
    server = document["servers"]["local"]
    assert (server["host"], server["protocol"]) == ("127.0.0.1:9192", "kafka")
    channels = {channel["address"]: channel for channel in document["channels"].values()}
    assert set(channels) == {"citizen.interactions", "citizen.interactions.dlq"}
    assert set(channels["citizen.interactions"]["messages"]) == set(EVENT_TYPES)
    for reference in _references(document):
        assert reference.startswith("#/"), reference
        _resolve(document, reference)
    for event_type in EVENT_TYPES:
        message = document["components"]["messages"][event_type]
        assert message["contentType"] == STRUCTURED_CONTENT_TYPE
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
        for example in message["examples"]:
            assert decode_record(json.dumps(example["payload"]).encode()).type == event_type
    actions = {
        (operation["action"], _resolve(document, operation["channel"]["$ref"])["address"])
        for operation in document["operations"].values()
    }
    assert actions == {
        ("send", "citizen.interactions"),
        ("receive", "citizen.interactions"),
        ("send", "citizen.interactions.dlq"),
    }
    # The committed file is the same document.
    assert json.loads((CONTRACT_DIR / "asyncapi.json").read_text(encoding="utf-8")) == document, REGENERATE


def test_write_contract_writes_every_file_and_removes_stale_ones(tmp_path: Path) -> None:
    stale = tmp_path / "types" / "retired.type.md"
    stale.parent.mkdir()
    stale.write_text("old\n")
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("kept\n")

    written = write_contract(tmp_path)

    files = contract_files()
    assert sorted(path.relative_to(tmp_path).as_posix() for path in written) == sorted(files)
    assert all((tmp_path / name).read_text(encoding="utf-8") == content for name, content in files.items())
    assert not stale.exists()
    assert unrelated.read_text() == "kept\n"
    assert all(content.endswith("\n") for content in files.values())


def test_markdown_links_point_at_generated_files() -> None:
    files = contract_files()
    for name, content in files.items():
        if not name.endswith(".md"):
            continue
        for target in re.findall(r"\]\(([^)]+)\)", content):
            if target.startswith("https://"):
                continue
            resolved = (Path(name).parent / target).as_posix()
            path = Path("/", resolved).resolve().as_posix().lstrip("/")
            assert path in files or any(other.startswith(f"{path}/") for other in files), f"{name}: {target}"
