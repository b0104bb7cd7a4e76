"""Cluster admin passwords: stored only as salted scrypt hashes.

scrypt is deliberately slow (tens of milliseconds), which would make every API call slow, since
HTTP Basic auth sends the password with each request. :class:`VerifiedCache` remembers, in memory
only, a keyed digest of each password that verified, under a random key made at start, so a
repeat call costs one HMAC; any change to the admins clears it, and an entry holds only for the
stored hash it verified against (a login racing with a password change cannot bring the old
password back).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading

from sealbox.secrets import Secret

_N, _R, _P = 1 << 14, 8, 1
_SALT_BYTES = 16
_LEN = 32


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=_LEN, maxmem=64 << 20)


def new_password() -> Secret:
    """A password generated for an admin (first start, a reset): 144 random bits, URL-safe
    text that survives a terminal copy and a shell."""
    return Secret.from_text(secrets.token_urlsafe(18))


def hash_password(password: Secret) -> str:
    salt = os.urandom(_SALT_BYTES)
    digest = _scrypt(password.reveal(), salt, _N, _R, _P)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: Secret, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(
            password.reveal(), base64.b64decode(salt), int(n), int(r), int(p)
        )
        return hmac.compare_digest(computed, base64.b64decode(digest))
    except ValueError:
        return False


class VerifiedCache:
    def __init__(self) -> None:
        self._key = os.urandom(32)
        self._seen: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def _tag(self, username: str, stored: str, password: Secret) -> bytes:
        # Bound to the stored hash too: a check that verified against a hash a concurrent
        # password change has since replaced can only remember a tag nothing matches any more
        # (clearing the cache alone would race with it: scrypt takes tens of milliseconds).
        return hmac.new(
            self._key, b"\0".join((username.encode(), stored.encode(), password.reveal())),
            hashlib.sha256,
        ).digest()

    def check(self, username: str, stored: str, password: Secret) -> bool:
        """Whether ``password`` verified for ``username`` while its hash was ``stored``."""
        with self._lock:
            known = self._seen.get(username)
        return known is not None and hmac.compare_digest(
            known, self._tag(username, stored, password))

    def remember(self, username: str, stored: str, password: Secret) -> None:
        tag = self._tag(username, stored, password)
        with self._lock:
            self._seen[username] = tag

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()
