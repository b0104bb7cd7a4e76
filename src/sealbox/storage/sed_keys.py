"""Key handling of the self-encrypting drive: AK -> (KEK, verifier key), MEK wrap, AK check.

From an authentication key (AK) and the per-drive salt, HKDF-SHA256 derives 64 bytes: the
first 32 are the KEK that wraps the MEK (RFC 5649, ``keywrap.py``), the last 32 the key of an
HMAC-SHA256 *verifier*. Unlock recomputes the verifier and compares it with the stored one by
:func:`hmac.compare_digest` only, so the time a wrong AK takes does not depend on how much of
it is right; the MEK is unwrapped only after the verifier matched.

HKDF is not a password hash: it does nothing to slow down guessing. AKs are therefore
high-entropy keys (the cluster generates 32 random bytes per drive and keeps them on the key
server), never passwords; :data:`AK_MIN` refuses anything shorter than 128 bits as a new AK.
Anyone holding the media can test AK guesses offline against the verifier (or the wrapped
MEK, which RFC 5649 authenticates anyway); with a 256-bit random AK that is hopeless. The
attempt counter of ``sed.py`` protects the online interface and the cluster from guessing.

With locking disabled the MEK is wrapped the same way under :data:`MSID`, a fixed public
value (like the MSID PIN of a TCG Opal drive): anyone can unlock, which is the point; the MEK
still never leaves the drive through its interface.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealbox.secrets import Secret
from sealbox.storage.crypto import XTS_KEY_SIZE
from sealbox.storage.keywrap import KeyUnwrapFailed, unwrap_dek, wrap_dek
from sealbox.storage.sed_errors import SedMetadataCorrupt, SedStateError
from sealbox.storage.sed_format import SALT_SIZE

# The public "manufactured SID" every drive starts with. Not a secret by design.
MSID: Final = Secret(b"sealbox-sed-v1-msid-public-not-a-secret")
AK_MIN: Final = 16
AK_MAX: Final = 1024
_INFO: Final = b"sealbox-sed v1 kek+verifier"
_VERIFIED: Final = b"sealbox-sed v1 ak-verifier"


def new_salt() -> bytes:
    return os.urandom(SALT_SIZE)


def new_mek() -> Secret:
    """64 random bytes for AES-256-XTS; redrawn in the (2**-256) case of equal halves."""
    while True:
        raw = os.urandom(XTS_KEY_SIZE)
        if not hmac.compare_digest(raw[:32], raw[32:]):
            return Secret(raw)


def check_new_ak(ak: Secret) -> None:
    """A new AK must be a key, not a password: 16 to 1024 bytes (the cluster uses 32)."""
    if not AK_MIN <= len(ak) <= AK_MAX:
        raise SedStateError(f"an authentication key must be {AK_MIN} to {AK_MAX} bytes")


def _derive(ak: Secret, salt: bytes) -> tuple[Secret, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=salt, info=_INFO).derive(ak.reveal())
    return Secret(okm[:32]), okm[32:]


def _verifier(verifier_key: bytes, media_id: bytes, salt: bytes) -> bytes:
    return hmac.new(verifier_key, _VERIFIED + media_id + salt, hashlib.sha256).digest()


def wrap_mek(ak: Secret, mek: Secret, media_id: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """(wrapped MEK, verifier) for ``ak`` with this salt; neither is secret."""
    kek, verifier_key = _derive(ak, salt)
    return wrap_dek(kek, mek), _verifier(verifier_key, media_id, salt)


def ak_matches(ak: Secret, media_id: bytes, salt: bytes, stored_verifier: bytes) -> bool:
    """Constant-time check of ``ak`` against the stored verifier (``hmac.compare_digest``)."""
    _kek, verifier_key = _derive(ak, salt)
    return hmac.compare_digest(_verifier(verifier_key, media_id, salt), stored_verifier)


def unwrap_mek(ak: Secret, salt: bytes, wrapped: bytes) -> Secret:
    """The MEK, for an AK that :func:`ak_matches`. A verifier that matches but a wrapped MEK
    that does not open means the metadata was damaged or forged: :class:`SedMetadataCorrupt`."""
    kek, _verifier_key = _derive(ak, salt)
    try:
        return unwrap_dek(kek, wrapped)
    except KeyUnwrapFailed:
        raise SedMetadataCorrupt("the wrapped media encryption key is damaged") from None
