"""The compact form events and summary facts are stored in (pure).

Every stored event repeats the same CloudEvents envelope (`{"specversion":"1.0","id":"`,
`","datacontenttype":"application/json","data":`, ...), a third of a typical event's JSON, and every
summary fact the same field names, half of it. Stored, each of those fixed fragments is one control
character instead. JSON text never holds a raw control character (RFC 8259 requires them escaped inside
strings, and allows only tab, line feed and carriage return between tokens, which are no markers here), so
the substitution is exact both ways, and a value stored before this form (holding no marker) reads back
unchanged.
"""

from dataclasses import dataclass

# Control characters, less the three that JSON allows as whitespace.
MARKERS = "".join(chr(code) for code in (*range(0x01, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)))


@dataclass(frozen=True)
class Fragments:
    """A table of fixed JSON fragments, each stored as the marker at its position.

    A fragment's marker is its position, so fragments are only ever appended: values already stored keep
    their meaning. Expanding puts each marker's fragment back where it stands, whatever the order.
    """

    fragments: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.fragments) > len(MARKERS):
            raise ValueError(f"at most {len(MARKERS)} fragments")

    def compact(self, json_text: str) -> str:
        """The stored form of a JSON text (which holds no raw control character, as JSON never does)."""
        for fragment, marker in zip(self.fragments, MARKERS, strict=False):
            json_text = json_text.replace(fragment, marker)
        return json_text

    def expand(self, stored: str) -> str:
        """The JSON text a stored form stands for (stored forms joined into one string expand at once)."""
        for fragment, marker in zip(self.fragments, MARKERS, strict=False):
            stored = stored.replace(marker, fragment)
        return stored


EVENT_FRAGMENTS = Fragments(
    (
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
)

# The summary facts, as `Fact.model_dump_json()` writes them (context/summary.py).
FACT_FRAGMENTS = Fragments(
    (
        '{"kind":"contact","key":"',
        '","channel":"',
        '","time":"',
        '{"kind":"case","case_ref":"',
        '","status":"',
        '","closed":false,"time":"',
        '","closed":true,"time":"',
        '{"kind":"appointment","appointment_id":"',
        '","starts_at":',
        ',"location":',
        ',"missed":false,"time":"',
        ',"missed":true,"time":"',
        '{"kind":"payment_failed","amount":"',
        '","currency":"',
        '","reason":"',
    )
)
