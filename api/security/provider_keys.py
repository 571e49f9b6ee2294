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
# Algorithms a provider's key may sign with when its JWK names none (RSA and EC keys).
ASYMMETRIC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]


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
    - A `kid` the set does not hold fetches it again too (the provider's new key, when it rotates).
    - Fetches are `cooldown_s` apart at least, failed ones included, and one at a time: a verification
      that finds a fetch under way does not wait for it, it is answered from the keys held.
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
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._held: _KeySet | None = None
        self._tried_at = float("-inf")
        self._fetching = threading.Lock()

    def key(self, kid: str) -> ProviderKey:
        """The key of `kid`; UnknownKey, or KeysUnavailable when no trusted key set can be had."""
        held = self._held
        if held is not None and kid in held.keys and self._age(held) < self._lifespan_s:
            return held.keys[kid]
        self._fetch_if_due()
        held = self._held
        if held is None or self._age(held) >= 2 * self._lifespan_s:
            raise KeysUnavailable("no key set fetched, or the last one is too old")
        if kid not in held.keys:
            raise UnknownKey(kid)
        return held.keys[kid]

    def _age(self, held: _KeySet) -> float:
        return self._clock() - held.fetched_at

    def _fetch_if_due(self) -> None:
        if self._clock() - self._tried_at < self._cooldown_s:
            return
        if not self._fetching.acquire(blocking=False):
            return  # another thread is fetching: nobody queues behind it
        try:
            if self._clock() - self._tried_at < self._cooldown_s:
                return  # fetched while this thread was deciding
            self._tried_at = self._clock()
            try:
                signing = self._client.get_signing_keys()
            except (
                jwt.PyJWKClientError,
                # PyJWT passes on what it does not expect of a provider: a body that is not JSON (or not
                # UTF-8) as a ValueError, a key set with no key it can use as a PyJWKSetError, and a
                # connection cut while the answer is read as an OSError. Each means, as a failed connection
                # does, that no key set can be had for now.
                jwt.PyJWKSetError,
                ValueError,
                OSError,
            ) as error:
                log.warning("identity provider keys unavailable", error=type(error).__name__)
                return
            keys = {
                key.key_id: ProviderKey(
                    key.key, [key.algorithm_name] if key.algorithm_name else ASYMMETRIC_ALGORITHMS
                )
                for key in signing
                if key.key_id
            }
            self._held = _KeySet(keys, fetched_at=self._clock())
        finally:
            self._fetching.release()
