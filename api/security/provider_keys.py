"""An identity provider's signing keys, fetched from its JWKS URL and held for a while.

PyJWT's client fetches and parses the key set; holding the keys is done here, because its own per-key cache
never expires (a key the provider withdrew would be trusted until a restart), and because its fetches queue
behind one lock: while the provider hung, every token naming an unknown `kid` (anyone can forge one) held a
worker thread for the fetch's whole timeout, until the API had none left for anything else.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import structlog

log = structlog.get_logger("security")

# How long one fetch of the key set may take.
FETCH_TIMEOUT_S = 5
# How long a token naming a key not held waits for a fetch already under way (the first after a start, or
# one a provider's new key set off), rather than being refused while the answer is on its way.
FETCH_WAIT_S = 2.0
# Key types a provider's key set may hold: public keys only. A symmetric (`oct`) key published there would
# be a secret anyone can read, and sign tokens with.
PUBLIC_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})


class KeysUnavailable(Exception):
    """No key set could be fetched from the provider, and none held is still trusted."""


class UnknownKey(Exception):
    """The trusted key set holds no key of that `kid`."""


@dataclass(frozen=True)
class ProviderKey:
    """A signing key of the provider, and the algorithms it admits."""

    key: Any
    algorithms: list[str]


@dataclass(frozen=True)
class _KeySet:
    keys: dict[str, ProviderKey]
    fetched_at: float  # time.monotonic()


class ProviderKeys:
    """The provider's signing keys by `kid` (thread-safe; a fetch blocks the thread that makes it).

    - A key set fetched is trusted for `lifespan_s`; a token verified after that fetches it again first.
    - A `kid` the set does not hold fetches it again too (the provider's new key, when it rotates), at most
      once per `cooldown_s`, failed fetches included.
    - One fetch at a time. A verification whose key is held does not wait for it; one whose key is not
      waits for it briefly (FETCH_WAIT_S), so the agents' first requests after a start, or the first tokens
      signed with a new key, are not refused while the key set is on its way.
    - While the provider cannot be reached, the last key set fetched stays trusted for one more lifespan
      (a withdrawal cannot be learnt meanwhile anyway), so a short outage signs nobody out.
    """

    def __init__(
        self,
        url: str,
        *,
        lifespan_s: float,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=FETCH_TIMEOUT_S)
        self._lifespan_s = lifespan_s
        # A set past its lifespan is fetched again however long the cooldown: a withdrawn key must not
        # outlast the lifespan because an operator set a longer cooldown.
        self._stale_cooldown_s = min(cooldown_s, lifespan_s)
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._held: _KeySet | None = None
        self._tried_at = float("-inf")
        self._fetching = threading.Lock()
        self._fetched = threading.Event()  # clear while a fetch is under way
        self._fetched.set()

    def key(self, kid: str) -> ProviderKey:
        """The key of `kid`; UnknownKey, or KeysUnavailable when no trusted key set can be had."""
        held = self._held
        if held is not None and kid in held.keys and self._age(held) < self._lifespan_s:
            return held.keys[kid]
        self._fetch_if_due(stale=held is not None and kid in held.keys)
        held = self._held
        if held is None or kid not in held.keys:
            self._fetched.wait(FETCH_WAIT_S)  # a fetch under way may bring it
            held = self._held
        if held is None or self._age(held) >= 2 * self._lifespan_s:
            raise KeysUnavailable("no key set fetched, or the last one is too old")
        if kid not in held.keys:
            raise UnknownKey(kid)
        return held.keys[kid]

    def fetch(self) -> None:
        """Fetch the key set now, if no fetch is under way (at start, so the first tokens find it held)."""
        self._tried_at = float("-inf")
        self._fetch_if_due(stale=False)

    def _age(self, held: _KeySet) -> float:
        return self._clock() - held.fetched_at

    def _due(self, *, stale: bool) -> bool:
        return self._clock() - self._tried_at >= (self._stale_cooldown_s if stale else self._cooldown_s)

    def _fetch_if_due(self, *, stale: bool) -> None:
        if not self._due(stale=stale):
            return
        if not self._fetching.acquire(blocking=False):
            return  # another thread is fetching
        try:
            if not self._due(stale=stale):
                return  # fetched while this thread was deciding
            self._tried_at = self._clock()
            self._fetched.clear()
            keys = self._fetch_keys()
            if keys is not None:
                self._held = _KeySet(keys, fetched_at=self._clock())
        finally:
            self._fetched.set()
            self._fetching.release()

    def _fetch_keys(self) -> dict[str, ProviderKey] | None:
        try:
            signing = self._client.get_signing_keys()
        except Exception as error:
            # Whatever the provider answers is untrusted input: besides its own errors for a failed fetch,
            # PyJWT passes on a body that is not JSON (or not UTF-8) as a ValueError, a cut connection as an
            # OSError, and a key it cannot build (an `alg` of "none", a key missing its parts) as whatever
            # its parsing raised. Each means that no key set can be had for now, never a failed request.
            log.warning("identity provider keys unavailable", error=type(error).__name__)
            return None
        return {
            key.key_id: ProviderKey(key.key, [key.algorithm_name])
            for key in signing
            if key.key_id and key.key_type in PUBLIC_KEY_TYPES and key.algorithm_name
        }
