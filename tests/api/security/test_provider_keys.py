"""An identity provider's keys as the API holds them, against a real key-set endpoint on loopback: a key the
provider withdraws stops being trusted, and a provider that hangs never holds more than one thread."""

import base64
import contextlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from api.security.provider_keys import FETCH_TIMEOUT_S, KeysUnavailable, ProviderKey, ProviderKeys, UnknownKey
from tests.jwks_endpoint import Answer, JwksEndpoint

LIFESPAN_S, COOLDOWN_S = 300.0, 30.0


class Clock:
    """The time ProviderKeys reads, moved on by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Provider:
    """A key-set endpoint whose keys, whether it answers at all, and how slowly, the test changes."""

    def __init__(self) -> None:
        self.keys = {
            kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in ("k1", "k2")
        }
        self.extra: list[dict[str, object]] = []  # published as they are, besides the keys above
        self.down = False
        self.delay_s = 0.0
        self.fetches = 0
        self._endpoint = JwksEndpoint(self._answer)
        self.url = self._endpoint.url

    def _answer(self) -> Answer:
        self.fetches += 1
        time.sleep(self.delay_s)
        if self.down:
            return 503, b"Service Unavailable"
        keys = [
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "RS256"}
            for kid, key in list(self.keys.items())
        ]
        return 200, json.dumps({"keys": keys + self.extra}).encode()

    def close(self) -> None:
        self._endpoint.close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    served = Provider()
    yield served
    served.close()


def held_keys(provider: Provider, clock: Clock) -> ProviderKeys:
    return ProviderKeys(provider.url, lifespan_s=LIFESPAN_S, cooldown_s=COOLDOWN_S, clock=clock)


def test_a_key_the_provider_withdrew_is_not_trusted_once_the_key_set_is_fetched_again(
    provider: Provider,
) -> None:
    clock = Clock()
    keys = held_keys(provider, clock)
    assert keys.key("k1").algorithms == ["RS256"]

    del provider.keys["k1"]
    clock.now += LIFESPAN_S - 1
    assert keys.key("k1")  # still within the key set's lifespan
    clock.now += 2
    with pytest.raises(UnknownKey):
        keys.key("k1")
    assert keys.key("k2")
    assert provider.fetches == 2


def test_a_key_set_is_fetched_again_for_an_unknown_kid_at_most_once_per_cooldown(provider: Provider) -> None:
    clock = Clock()
    keys = held_keys(provider, clock)
    keys.key("k1")
    for forged in range(20):
        with pytest.raises(UnknownKey):
            keys.key(f"forged-{forged}")
    assert provider.fetches == 1  # the first fetch started the cooldown

    provider.keys["k3"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    clock.now += COOLDOWN_S
    assert keys.key("k3")  # the provider's new key, fetched when first named after the cooldown
    assert provider.fetches == 2


def test_while_the_provider_is_down_the_last_key_set_is_trusted_one_more_lifespan(provider: Provider) -> None:
    clock = Clock()
    keys = held_keys(provider, clock)
    keys.key("k1")
    provider.down = True

    clock.now += LIFESPAN_S + 1
    assert keys.key("k1")  # the fetch failed; nobody is signed out by a short outage
    clock.now += LIFESPAN_S
    with pytest.raises(KeysUnavailable):
        keys.key("k1")
    assert provider.fetches == 3


def test_tokens_arriving_during_the_first_fetch_wait_for_it_rather_than_being_refused(
    provider: Provider,
) -> None:
    # After a restart every desk reconnects at once: refused (401), each would have been signed out.
    provider.delay_s = 0.3
    keys = ProviderKeys(provider.url, lifespan_s=LIFESPAN_S, cooldown_s=COOLDOWN_S)
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(keys.key, ["k1"] * 8))
    assert all(key.algorithms == ["RS256"] for key in found)
    assert provider.fetches == 1


def test_tokens_signed_with_a_new_key_wait_for_the_fetch_one_of_them_set_off(provider: Provider) -> None:
    clock = Clock()
    keys = held_keys(provider, clock)
    keys.key("k1")
    provider.keys["k3"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    provider.delay_s = 0.3
    clock.now += COOLDOWN_S
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(keys.key, ["k3"] * 8))
    assert len(found) == 8
    assert provider.fetches == 2


def test_a_symmetric_key_in_the_providers_key_set_is_never_trusted(provider: Provider) -> None:
    # A key set is public: an HMAC secret published in it is one anyone could sign tokens with.
    published = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    provider.extra = [{"kty": "oct", "kid": "shared", "k": published, "alg": "HS256"}]
    keys = held_keys(provider, Clock())
    with pytest.raises(UnknownKey):
        keys.key("shared")
    assert keys.key("k1")


@pytest.mark.parametrize(
    "malformed",
    [
        {"kty": "RSA", "kid": "bad", "alg": "none", "n": "AQAB", "e": "AQAB"},
        {"kty": "oct", "kid": "bad", "alg": "HS256"},
        {"kty": "RSA", "kid": "bad", "alg": ["RS256"], "n": "AQAB", "e": "AQAB"},
    ],
)
def test_a_key_set_with_a_malformed_key_is_unavailable_or_skips_it_never_an_error(
    provider: Provider, malformed: dict[str, object]
) -> None:
    provider.extra = [malformed]
    keys = held_keys(provider, Clock())
    with contextlib.suppress(KeysUnavailable):  # PyJWT may refuse the whole set: said as for an outage
        assert keys.key("k1")
    with pytest.raises((KeysUnavailable, UnknownKey)):
        keys.key("bad")
    assert provider.fetches == 1


def test_a_cooldown_longer_than_the_lifespan_does_not_keep_a_withdrawn_key(provider: Provider) -> None:
    clock = Clock()
    keys = ProviderKeys(provider.url, lifespan_s=LIFESPAN_S, cooldown_s=10 * LIFESPAN_S, clock=clock)
    keys.key("k1")
    del provider.keys["k1"]
    clock.now += LIFESPAN_S
    with pytest.raises(UnknownKey):
        keys.key("k1")


def test_a_provider_that_hangs_holds_one_thread_not_one_per_token() -> None:
    # Every token naming a kid not held asked for the key set, each fetch waiting behind the one before
    # for its whole timeout: forged tokens took every worker thread the API has.
    release = threading.Event()
    fetches: list[int] = []

    def hang() -> Answer:
        fetches.append(1)
        release.wait(timeout=30)
        return 503, b""

    endpoint = JwksEndpoint(hang)
    try:
        keys = ProviderKeys(endpoint.url, lifespan_s=LIFESPAN_S, cooldown_s=COOLDOWN_S)
        with ThreadPoolExecutor(max_workers=16) as pool:
            tried = [pool.submit(keys.key, f"forged-{n}") for n in range(16)]
            # All but the one fetching are answered while the provider still hangs.
            # They wait for the fetch a moment (its answer may bring their key), not for its timeout.
            answered_while_hanging = wait_for_count(tried, 15, timeout_s=FETCH_TIMEOUT_S - 1)
            release.set()
            failures = [future.exception() for future in tried]
    finally:
        release.set()
        endpoint.close()
    assert answered_while_hanging
    assert all(isinstance(failure, KeysUnavailable) for failure in failures), failures
    assert len(fetches) == 1


def wait_for_count(futures: list[Future[ProviderKey]], count: int, timeout_s: float = 10) -> bool:
    """Whether `count` of the futures are done within the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(future.done() for future in futures) >= count:
            return True
        time.sleep(0.01)
    return False
