"""The compact form events and summary facts are stored in (pure).

Every stored event repeats the same CloudEvents envelope (`{"specversion":"1.0","id":"`,
`","datacontenttype":"application/json","data":`, ...), a third of a typical event's JSON, and every
summary fact the same field names, half of it. Stored, each of those fixed fragments is one control
character instead. JSON text never holds a raw control character (RFC 8259 requires them escaped inside
strings, and allows only tab, line feed and carriage return between tokens, which are no markers here), so
the substitution is exact both ways, and a value stored before this form (holding no marker) reads back
unchanged.
"""

from dataclasses import dataclass, field

# Control characters, less the three that JSON allows as whitespace.
MARKERS = "".join(chr(code) for code in (*range(0x01, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)))


@dataclass(frozen=True)
class Fragments:
    """A table of fixed JSON fragments, each stored as the marker at its position.

    A fragment's marker is its position, so fragments are only ever appended: values already stored keep
    their meaning. Expanding puts each marker's fragment back where it stands, whatever the order.
    """

    fragments: tuple[str, ...]
    # Substitutions run on UTF-8 bytes: CPython's bytes.replace is several times faster than str.replace
    # here, and a UTF-8 multi-byte sequence never holds a byte below 0x80, so no marker can be split.
    _pairs: tuple[tuple[bytes, bytes], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.fragments) > len(MARKERS):
            raise ValueError(f"at most {len(MARKERS)} fragments")
        markers = MARKERS[: len(self.fragments)]
        pairs = tuple(
            (fragment.encode(), marker.encode())
            for fragment, marker in zip(self.fragments, markers, strict=True)
        )
        object.__setattr__(self, "_pairs", pairs)

    def marker(self, fragment: str) -> str:
        """The marker that stands for `fragment` (one of the table's) in stored forms."""
        return MARKERS[self.fragments.index(fragment)]

    def compact(self, json_text: str) -> str:
        """The stored form of a JSON text (which holds no raw control character, as JSON never does)."""
        if not json_text:
            return json_text  # an event with no summary fact (a third of them): nothing to look for
        data = json_text.encode()
        for fragment, marker in self._pairs:
            data = data.replace(fragment, marker)
        return data.decode()

    def expand(self, stored: str) -> str:
        """The JSON text a stored form stands for (stored forms joined into one string expand at once)."""
        data = stored.encode()
        for fragment, marker in self._pairs:
            data = data.replace(marker, fragment)
        return data.decode()


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
