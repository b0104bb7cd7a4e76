"""Errors of the volume engine. All are :class:`~sealbox.errors.SealboxError` subclasses, so
the API layer can report them; the NBD layer maps :class:`VolumeDataUnavailable` to EIO.

Messages name volumes, chunks and drives by number only: never data, digests or keys.
"""

from __future__ import annotations

from sealbox.errors import InvalidParameter, SealboxError


class NotEnoughSpace(SealboxError):
    """No two nodes have a block drive with a free slot (or no slice drive has room)."""

    element_name = "xNotEnoughSpace"


class VolumeDataUnavailable(SealboxError):
    """Neither copy of some data could be read and verified; nothing is returned instead."""

    element_name = "xVolumeDataUnavailable"


class MetadataUnavailable(SealboxError):
    """No slice drive holds readable volume metadata, or none can be written."""

    element_name = "xSliceMetadataUnavailable"


class MetadataNotCurrent(MetadataUnavailable):
    """Copies of the volume metadata were found, but none on a drive known to hold every
    acknowledged change (``drive_ids``: the engine ids of those drives)."""

    def __init__(self, message: str, drive_ids: list[int]) -> None:
        super().__init__(message)
        self.drive_ids = drive_ids


class MetadataExists(SealboxError):
    """``create=True`` was asked for drives that already hold volume metadata."""

    element_name = "xSliceMetadataExists"


class VolumeRangeError(InvalidParameter):
    """An I/O request outside the volume, or a size that is not a whole number of sectors."""
