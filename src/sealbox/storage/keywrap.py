"""Key wrapping: a drive's DEK is stored only wrapped by the master key (RFC 5649).

RFC 5649 (AES key wrap with padding) is deterministic and authenticated: unwrapping with the
wrong key, or a wrapped key with any bit changed, fails its integrity check. The failure says
nothing about which key was tried or why, so an error message or log line cannot help an
attacker probe for the key.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)

from sealbox.errors import SealboxError
from sealbox.secrets import Secret

MASTER_KEY_SIZE: Final = 32
DEK_SIZE: Final = 64
WRAPPED_DEK_SIZE: Final = 72  # RFC 5649: 8-byte integrity block + the key padded to 8 bytes
_KEK_SIZES: Final = (16, 24, 32)


class KeyWrapError(SealboxError):
    """A key could not be wrapped: the master key or the key to wrap has the wrong size."""

    element_name = "xKeyWrapFailed"


class KeyUnwrapFailed(SealboxError):
    """The wrapped key does not open with this master key (wrong key or damaged data)."""

    element_name = "xKeyUnwrapFailed"

    def __init__(self) -> None:
        super().__init__("the wrapped key could not be unwrapped with the given master key")


def _master(master_key: Secret, sizes: tuple[int, ...] = _KEK_SIZES) -> bytes:
    raw = master_key.reveal()
    if len(raw) not in sizes:
        raise KeyWrapError("the master key has the wrong size for AES")
    return raw


def wrap_key(master_key: Secret, key: Secret) -> bytes:
    """RFC 5649 wrap of ``key`` under an AES ``master_key`` (16, 24 or 32 bytes; sealbox's own
    master keys are always 32); the result is not secret."""
    raw = key.reveal()
    if not raw:
        raise KeyWrapError("there is no key to wrap")
    return aes_key_wrap_with_padding(_master(master_key), raw)


def unwrap_key(master_key: Secret, wrapped: bytes) -> Secret:
    """Unwrap ``wrapped``; raises :class:`KeyUnwrapFailed` on any mismatch, never the cause."""
    kek = _master(master_key)
    try:
        return Secret(aes_key_unwrap_with_padding(kek, bytes(wrapped)))
    except (InvalidUnwrap, ValueError):
        # ``from None``: the cryptography exception adds nothing and must not reach a log.
        raise KeyUnwrapFailed() from None


def wrap_dek(master_key: Secret, dek: Secret) -> bytes:
    """Wrap a 64-byte XTS data encryption key; always :data:`WRAPPED_DEK_SIZE` bytes."""
    if len(dek) != DEK_SIZE:
        raise KeyWrapError("a data encryption key must be 64 bytes")
    _master(master_key, (MASTER_KEY_SIZE,))
    return wrap_key(master_key, dek)


def unwrap_dek(master_key: Secret, wrapped: bytes) -> Secret:
    """Unwrap a DEK wrapped by :func:`wrap_dek`; anything else is :class:`KeyUnwrapFailed`."""
    _master(master_key, (MASTER_KEY_SIZE,))
    if len(wrapped) != WRAPPED_DEK_SIZE:
        raise KeyUnwrapFailed()
    dek = unwrap_key(master_key, wrapped)
    if len(dek) != DEK_SIZE:
        raise KeyUnwrapFailed()
    return dek
