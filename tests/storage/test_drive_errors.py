"""The Element error names of the storage errors: a renamed error is a visible change."""

from __future__ import annotations

from sealbox.errors import SealboxError
from sealbox.storage import drive_errors
from sealbox.storage.crypto import SectorCipherError
from sealbox.storage.keysource import KeyFileInsecure, MasterKeyUnavailable
from sealbox.storage.keywrap import KeyUnwrapFailed, KeyWrapError

NAMES: dict[type[SealboxError], str] = {
    drive_errors.DriveError: "xDriveFailed",
    drive_errors.DriveIOError: "xDriveIOFailed",
    drive_errors.DriveHeaderCorrupt: "xDriveHeaderCorrupt",
    drive_errors.DriveTruncated: "xDriveTruncated",
    drive_errors.DriveFormatUnsupported: "xDriveFormatUnsupported",
    drive_errors.DriveLocked: "xDriveLocked",
    drive_errors.DriveKeyUnavailable: "xDriveKeyUnavailable",
    drive_errors.DriveKeySlotError: "xDriveKeySlotInvalid",
    SectorCipherError: "xSectorCipherFailed",
    KeyWrapError: "xKeyWrapFailed",
    KeyUnwrapFailed: "xKeyUnwrapFailed",
    MasterKeyUnavailable: "xMasterKeyUnavailable",
    KeyFileInsecure: "xKeyFileInsecure",
}


def test_storage_error_names_are_pinned() -> None:
    assert {cls: cls.element_name for cls in NAMES} == NAMES


def test_every_storage_error_is_a_sealbox_error_and_every_drive_error_a_drive_error() -> None:
    assert all(issubclass(cls, SealboxError) for cls in NAMES)
    drive_classes = [c for c in vars(drive_errors).values() if isinstance(c, type)]
    assert all(
        issubclass(c, drive_errors.DriveError) for c in drive_classes if c is not SealboxError
    )


def test_unwrap_failure_reaches_a_client_without_detail() -> None:
    assert KeyUnwrapFailed().to_element() == {
        "code": 500,
        "name": "xKeyUnwrapFailed",
        "message": "the wrapped key could not be unwrapped with the given master key",
    }
