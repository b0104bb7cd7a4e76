from __future__ import annotations

import pickle

import pytest

from sealbox.cluster.passwords import VerifiedCache, hash_password, verify_password
from sealbox.secrets import Secret


def test_secret_never_prints() -> None:
    s = Secret(b"key-material")
    for text in (repr(s), str(s), f"{s}", f"{s!r}", str([s]), str({"k": s})):
        assert "key-material" not in text
    with pytest.raises(TypeError):
        pickle.dumps(s)
    with pytest.raises(TypeError):
        hash(s)
    assert s == Secret(b"key-material") and s != Secret(b"other")


def test_password_hashes_are_salted_and_verify() -> None:
    a, b = hash_password(Secret(b"pw-123456")), hash_password(Secret(b"pw-123456"))
    assert a != b and "pw-123456" not in a
    assert verify_password(Secret(b"pw-123456"), a)
    assert not verify_password(Secret(b"pw-1234567"), a)
    assert not verify_password(Secret(b"pw-123456"), "garbage")
    assert not verify_password(Secret(b"pw-123456"), "md5$1$2$3$4$5")


def test_verified_cache() -> None:
    cache = VerifiedCache()
    assert not cache.check("admin", "hash-1", Secret(b"pw"))
    cache.remember("admin", "hash-1", Secret(b"pw"))
    assert cache.check("admin", "hash-1", Secret(b"pw"))
    assert not cache.check("admin", "hash-1", Secret(b"pw2"))
    cache.clear()
    assert not cache.check("admin", "hash-1", Secret(b"pw"))


def test_a_password_remembered_late_does_not_outlive_its_hash() -> None:
    """A login that verified the old password against the old hash, racing with a password
    change, remembers it only after the change cleared the cache: it must not match once the
    stored hash is the new one."""
    cache = VerifiedCache()
    cache.clear()  # the change commits and clears
    cache.remember("admin", "old-hash", Secret(b"old-pw"))  # the slow login finishes
    assert not cache.check("admin", "new-hash", Secret(b"old-pw"))
    assert cache.check("admin", "old-hash", Secret(b"old-pw"))  # only the old hash matches
