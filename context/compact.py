"""The compact form events are stored in (pure).

Every stored event repeats the same CloudEvents envelope (`{"specversion":"1.0","id":"`,
`","datacontenttype":"application/json","data":`, ...): a third of a typical event's JSON. Stored, each
of those fixed fragments is one control character instead. JSON text never holds a raw control character
(RFC 8259 requires them escaped inside strings, and allows only tab, line feed and carriage return between
tokens, which are no markers here), so the substitution is exact both ways, and a value stored before this
form (holding no marker) reads back unchanged.
"""

# A fragment's marker is its position, so fragments are only ever appended: values already stored keep
# their meaning. Expanding puts each marker's fragment back where it stands, whatever the order.
FRAGMENTS = (
    # The CloudEvents envelope, as `CloudEvent.to_json()` writes it.
    '{"specversion":"1.0","id":"',
    '","source":"',
    '","type":"',
    '","subject":"',
    '","time":"',
    '","datacontenttype":"application/json","data":',
    # The fields every event's data starts with (models.taxonomy.EventData).
    '{"channel":"',
    '","summary":"',
)
# Control characters, less the three that JSON allows as whitespace.
MARKERS = "".join(chr(code) for code in (*range(0x01, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)))
_TABLE = tuple(zip(FRAGMENTS, MARKERS, strict=False))


def compact(json_text: str) -> str:
    """The stored form of a JSON text (which holds no raw control character, as valid JSON never does)."""
    for fragment, marker in _TABLE:
        json_text = json_text.replace(fragment, marker)
    return json_text


def expand(stored: str) -> str:
    """The JSON text a stored form stands for (stored forms joined into one string expand at once)."""
    for fragment, marker in _TABLE:
        stored = stored.replace(marker, fragment)
    return stored
