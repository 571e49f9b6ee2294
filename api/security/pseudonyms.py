"""Citizen pseudonyms: a keyed hash stands for the citizen in logs and the audit trail.

The same citizen always gets the same pseudonym (so an auditor can follow one person's trail), but
nobody can turn a pseudonym back into an id without the key.
"""

import hashlib
import hmac
from functools import lru_cache


def pseudonymise(citizen_id: str, *, key: str) -> str:
    """The citizen's pseudonym under `key`."""
    # A copy of an HMAC already keyed, not the one-shot `hmac.digest`: it skips hashing the key again
    # (1.4 against 2.0 us), and it keeps the interpreter lock for a short input where the one-shot form
    # lets go of it. The audit's worker thread writes a pseudonym for every context read; each time it let
    # go, it waited up to the switch interval to get the lock back from the busy event loop.
    keyed = _keyed(key).copy()
    keyed.update(citizen_id.encode())
    return f"p-{keyed.hexdigest()[:24]}"


@lru_cache(maxsize=16)
def _keyed(key: str) -> "hmac.HMAC":
    """An HMAC-SHA256 under `key`, with nothing hashed yet (copied for each pseudonym, never updated)."""
    return hmac.new(key.encode(), digestmod=hashlib.sha256)
