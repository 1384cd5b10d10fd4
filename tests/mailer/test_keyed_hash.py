"""The precomputed HMAC gives exactly what the standard library's does, for every key length that matters:
empty, short, one block, longer than a block (hashed first, as RFC 2104 says)."""

from __future__ import annotations

import hmac
import random

import pytest

from mailer.keyed_hash import KeyedHash, keyed_hash


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
@pytest.mark.parametrize("key_length", [0, 1, 20, 32, 63, 64, 65, 128, 300])
def test_same_digest_as_hmac(algorithm: str, key_length: int) -> None:
    rng = random.Random(key_length)
    key = rng.randbytes(key_length)
    signer = KeyedHash(key, algorithm)
    for length in (0, 1, 17, 64, 1000):
        message = rng.randbytes(length)
        assert signer.digest(message) == hmac.digest(key, message, algorithm)
    assert signer.digest(b"x") == signer.digest(b"x")  # the kept states are copied, never consumed


def test_cached_per_key_and_algorithm() -> None:
    assert keyed_hash(b"k", "sha1") is keyed_hash(b"k", "sha1")
    assert keyed_hash(b"k", "sha1") is not keyed_hash(b"k", "sha256")
    assert keyed_hash(b"k", "sha1").digest(b"m") != keyed_hash(b"K", "sha1").digest(b"m")
