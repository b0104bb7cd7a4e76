"""Errors of the emulated self-encrypting drive (``sed.py``).

Every one is a :class:`sealbox.errors.SealboxError` with a client-safe message. Messages may
name the drive's media id and the number of attempts left; they never carry key bytes, AK
bytes, derived keys, verifiers or the reason an unwrap failed.
"""

from __future__ import annotations

from sealbox.errors import SealboxError


class SedError(SealboxError):
    """Base of every self-encrypting-drive failure (also: a request outside the drive)."""

    element_name = "xSedFailed"


class SedIOError(SedError):
    """The media below the drive reported an operating-system I/O error."""

    element_name = "xSedIOFailed"


class SedMetadataCorrupt(SedError):
    """No copy of the drive's locking-range metadata is intact, or it contradicts the media."""

    element_name = "xSedMetadataCorrupt"


class SedFormatUnsupported(SedError):
    """The metadata was written by a newer format version than this sealbox knows."""

    element_name = "xSedFormatUnsupported"


class SedLocked(SedError):
    """Locking is enabled and the drive has not been unlocked since power-on: no I/O."""

    element_name = "xSedLocked"


class SedAuthenticationFailed(SedError):
    """The authentication key (AK) given is not the drive's; the failure was counted."""

    element_name = "xSedAuthenticationFailed"


class SedLockedOut(SedError):
    """Too many wrong AKs since power-on: every authentication is refused, even with the
    right AK, until the drive is power-cycled (reopened)."""

    element_name = "xSedLockedOut"


class SedStateError(SedError):
    """The operation is not valid in the drive's state (e.g. enabling locking twice) or a new
    AK is unacceptable (too short or too long)."""

    element_name = "xSedStateInvalid"
