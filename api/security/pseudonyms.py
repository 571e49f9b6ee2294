"""Citizen pseudonyms: a keyed hash stands for the citizen in logs and the audit trail.

The same citizen always gets the same pseudonym (so an auditor can follow one person's trail), but
nobody can turn a pseudonym back into an id without the key.
"""

import hashlib
import hmac


def pseudonymise(citizen_id: str, *, key: str) -> str:
    """The citizen's pseudonym under `key`."""
    digest = hmac.new(key.encode(), citizen_id.encode(), hashlib.sha256).hexdigest()
    return f"p-{digest[:24]}"
