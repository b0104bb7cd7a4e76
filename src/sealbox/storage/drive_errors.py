"""Errors of the drive format and the drive's data path.

Every one is a :class:`sealbox.errors.SealboxError` with a client-safe message: paths and
master-key identifiers may appear (they are not secret), key bytes and unwrap details never do.
"""

from __future__ import annotations

from sealbox.errors import SealboxError


class DriveError(SealboxError):
    """Base of every drive failure; the drive should be failed out of service."""

    element_name = "xDriveFailed"


class DriveIOError(DriveError):
    """The operating system reported an I/O error reading or writing the drive."""

    element_name = "xDriveIOFailed"


class DriveHeaderCorrupt(DriveError):
    """No copy of the drive header is intact (bad magic, checksum or field values)."""

    element_name = "xDriveHeaderCorrupt"


class DriveTruncated(DriveError):
    """The drive is smaller than its header says: its data area runs past the end."""

    element_name = "xDriveTruncated"


class DriveFormatUnsupported(DriveError):
    """The header is intact but written by a format version this sealbox does not know."""

    element_name = "xDriveFormatUnsupported"


class DriveLocked(DriveError):
    """The drive is encrypted and has not been unlocked: it serves no I/O."""

    element_name = "xDriveLocked"


class DriveKeyUnavailable(DriveError):
    """No key slot of the drive opens with any master key the key source can provide."""

    element_name = "xDriveKeyUnavailable"


class DriveKeySlotError(DriveError):
    """A key-slot operation would lose the DEK or is not valid in the drive's state."""

    element_name = "xDriveKeySlotInvalid"
