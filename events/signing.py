"""Erasure records are signed by the API that publishes them, and verified by whoever applies them.

A `citizen.erased` record removes a citizen's data, and every rebuild replays it. Every service of the
organisation publishes to the topic, so a record's source proves nothing: any publisher (or anyone holding
one's credentials) can name the API's source, and one record would erase a citizen, with no trace in the
audit trail. So the API signs each erasure record it publishes (HMAC-SHA-256, with a key that the API,
the consumers and rebuilds hold, and no publisher), and the consumer and every rebuild apply only those
whose signature verifies: any other is dead-lettered, or skipped by a rebuild, as `unverified`.

The signature covers what an erasure acts on: the record's id, its citizen and its time (to the
microsecond, as the erasure mark keeps it). A genuine record published again changes nothing: it erases
the same citizen up to the same moment, which is already done; once its erasure mark would have expired,
it erases only where something from before it is still held (context/store.py, `_erasure_due`).

HMAC is symmetric: whoever holds a key can sign as well as verify. So every process that holds one (the
API, the consumers, rebuilds) can sign erasures, and the keys are as secret as the API's own secrets.
"""

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Self

from pydantic import AwareDatetime, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from context.timeline import time_score
from models.events import CloudEvent

# The CloudEvents extension attribute that carries the signature: "<key id>:<base64url of the HMAC>".
SIGNATURE_ATTRIBUTE = "signature"
# Known only to development set-ups: refused where `CITIZEN_CONTEXT_SECURITY_ENVIRONMENT` is production.
DEVELOPMENT_KEY_ID = "development"
DEVELOPMENT_KEY = "citizen-context-development-only-erasure-signing-key"
# Bound into every signature, so that a key that also serves another purpose cannot be used across them.
_PURPOSE = "citizen-context erasure record v1"
MIN_KEY_BYTES = 32
# The dead-letter reason of an erasure record whose signature does not verify (a rebuild skips it).
UNVERIFIED = "unverified"
# Why a record without any signature is not applied (the consumer's log gives its own remedy for it).
UNSIGNED = f"an erasure record must carry the API's signature (extension `{SIGNATURE_ATTRIBUTE}`)"
# An HMAC-SHA-256 in base64url without padding: anything else is refused before it is compared.
_SIGNATURE_FORM = re.compile(r"[A-Za-z0-9_-]{43}")


class Deployment(BaseSettings):
    """The deployment's environment alone, read from the variable the security settings declare (and
    document): the consumer and rebuilds need to know it without the API's other security settings."""

    model_config = SettingsConfigDict(env_prefix="CITIZEN_CONTEXT_SECURITY_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"


class SigningSettings(BaseSettings):
    """The keys of the erasure records the API publishes (the same on the API, consumers and rebuilds)."""

    # The keys are secrets: an error about a setting names it without its value.
    model_config = SettingsConfigDict(
        env_prefix="CITIZEN_CONTEXT_SIGNING_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    keys: dict[str, SecretStr] = Field(
        default_factory=lambda: {DEVELOPMENT_KEY_ID: SecretStr(DEVELOPMENT_KEY)},
        description='HMAC-SHA-256 keys of erasure records by id, as JSON: {"2026-12": "…"}, at least 32 '
        "bytes each. The API, the consumers and rebuilds need the same; keep an old key while the topic "
        "holds records it signed. The default, a development key, is refused outside development.",
    )
    key_id: str = Field(
        default=DEVELOPMENT_KEY_ID,
        description="Which of `CITIZEN_CONTEXT_SIGNING_KEYS` the API signs erasure records with.",
    )
    unsigned_before: AwareDatetime | None = Field(
        default=None,
        description="Erasure records timed before this RFC 3339 time (not in the future) are applied "
        "unsigned, from whoever published them: those published before records were signed. Unset: none is.",
    )

    @property
    def holds_development_key(self) -> bool:
        """Whether any key listed is the development key (whatever its id)."""
        return any(key.get_secret_value() == DEVELOPMENT_KEY for key in self.keys.values())

    @model_validator(mode="after")
    def _usable_keys(self) -> Self:
        if problems := self._problems():
            raise ValueError("; ".join(problems))
        return self

    def _problems(self) -> list[str]:
        """Every reason these settings cannot be used, so that one start names them all."""
        problems = []
        outside_development = Deployment().environment != "development"
        refuses_development_key = outside_development and self.holds_development_key
        if refuses_development_key:
            problems.append(
                "the development erasure signing key is refused outside development: set "
                "CITIZEN_CONTEXT_SIGNING_KEYS and CITIZEN_CONTEXT_SIGNING_KEY_ID"
            )
        short = short_key_ids(self.keys, MIN_KEY_BYTES)
        if outside_development and short:
            problems.append(
                f"CITIZEN_CONTEXT_SIGNING_KEYS: erasure signing keys need at least {MIN_KEY_BYTES} bytes "
                f"(256 bits); shorter: {', '.join(short)}"
            )
        if any(":" in key_id or not key_id for key_id in self.keys):
            problems.append(
                "CITIZEN_CONTEXT_SIGNING_KEYS: a key id must be non-empty and hold no ':' (the signature's "
                "separator)"
            )
        # A production set-up that names its key id but not its keys is told what is really missing (the
        # development key's problem above), not also that the id is unknown.
        if self.key_id not in self.keys and not refuses_development_key:
            problems.append(
                f"CITIZEN_CONTEXT_SIGNING_KEY_ID {shown_key_id(self.key_id)} is not one of the ids of "
                f"CITIZEN_CONTEXT_SIGNING_KEYS ({', '.join(map(shown_key_id, sorted(self.keys)))})"
            )
        if self.unsigned_before is not None and self.unsigned_before > datetime.now(UTC):
            # It would let anyone publish unsigned erasures of everything until then.
            problems.append(
                "CITIZEN_CONTEXT_SIGNING_UNSIGNED_BEFORE is in the future: set it to when erasures began to "
                "be signed"
            )
        return problems


def shown_key_id(key_id: str) -> str:
    """A key id as an error names it. One as long as a key is not shown: it may be a key written in the id's
    place (the JSON's two sides swapped), and an error never shows a key."""
    if len(key_id.encode()) < MIN_KEY_BYTES:
        return repr(key_id)
    return f"(an id of {len(key_id)} characters, not shown: a key in the id's place?)"


def short_key_ids(keys: Mapping[str, SecretStr], minimum_bytes: int) -> list[str]:
    """The ids of the keys (by id) shorter than `minimum_bytes`, sorted, as an error shows them
    (`shown_key_id`): the erasure signing keys and the API's token secrets alike."""
    return [shown_key_id(i) for i in sorted(keys) if len(keys[i].get_secret_value().encode()) < minimum_bytes]


@dataclass(frozen=True)
class ErasureSigner:
    """Signs erasure records (the API) and tells why one does not verify (the consumer, rebuilds)."""

    keys: Mapping[str, bytes] = field(repr=False)
    key_id: str
    # Records timed before this score are applied without a signature; None: none is.
    unsigned_before: int | None = None

    @classmethod
    def from_settings(cls, settings: SigningSettings) -> "ErasureSigner":
        before = settings.unsigned_before
        return cls(
            keys={key_id: key.get_secret_value().encode() for key_id, key in settings.keys.items()},
            key_id=settings.key_id,
            unsigned_before=None if before is None else time_score(before),
        )

    def signed(self, event: CloudEvent) -> CloudEvent:
        """`event` with its signature, by the signing key."""
        signature = _signature(self.keys[self.key_id], event)
        return event.model_copy(update={SIGNATURE_ATTRIBUTE: f"{self.key_id}:{signature}"})

    def problem(self, event: CloudEvent) -> str | None:
        """Why the erasure record `event` is not to be applied; None when its signature verifies (pure).

        Says what is wrong without any key or signature in it: the text goes to the dead-letter record.
        """
        claimed = (event.__pydantic_extra__ or {}).get(SIGNATURE_ATTRIBUTE)
        if claimed is None:
            if self.unsigned_before is not None and time_score(event.time) < self.unsigned_before:
                return None
            return UNSIGNED
        if not isinstance(claimed, str) or ":" not in claimed:
            return f"`{SIGNATURE_ATTRIBUTE}` must be '<key id>:<signature>'"
        key_id, signature = claimed.rsplit(":", 1)
        key = self.keys.get(key_id)
        if key is None:
            return "the erasure record is signed with a key this process does not hold"
        if not _SIGNATURE_FORM.fullmatch(signature):
            return f"`{SIGNATURE_ATTRIBUTE}` must end in a base64url HMAC-SHA-256 (43 characters)"
        if not hmac.compare_digest(signature.encode(), _signature(key, event).encode()):
            return "the erasure record's signature does not match it"
        return None


def signing_cautions(settings: SigningSettings, *, kafka_on_loopback: bool) -> list[str]:
    """What a process that applies erasure records should warn of at start (pure): settings that let
    others than the API erase citizens, allowed where the deployment's environment is not production."""
    cautions = []
    if settings.holds_development_key and not kafka_on_loopback:
        cautions.append(
            "erasure records verify with the development key, which anyone can read in this project's "
            "source, while Kafka is not on this machine: set CITIZEN_CONTEXT_SIGNING_KEYS and "
            "CITIZEN_CONTEXT_SECURITY_ENVIRONMENT=production"
        )
    if settings.unsigned_before is not None:
        cautions.append(
            f"erasure records timed before {settings.unsigned_before.isoformat()} are applied unsigned, "
            "from whoever published them: unset CITIZEN_CONTEXT_SIGNING_UNSIGNED_BEFORE once the topic "
            "holds none of them"
        )
    return cautions


def _signature(key: bytes, event: CloudEvent) -> str:
    """The base64url HMAC-SHA-256 of what an erasure acts on (pure). The fields go as a JSON array, so no
    choice of their text can make two different records sign alike."""
    message = json.dumps([_PURPOSE, event.id, event.subject, time_score(event.time)]).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
