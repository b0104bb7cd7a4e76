"""Pins every Element error name sealbox can send. A renamed or new error must show up here,
because scripts written against the Element API match on these names."""

from __future__ import annotations

import importlib
import pkgutil

import sealbox
from sealbox.errors import SealboxError

PINNED = {
    "sealbox.api.dispatch.PermissionDenied": "xPermissionDenied",
    "sealbox.api.dispatch.RequestError": "xInvalidRequest",
    "sealbox.cluster.authkeys.AkInvalid": "xAuthenticationKeyInvalid",
    "sealbox.cluster.authkeys.AkUnavailable": "xAuthenticationKeyUnavailable",
    "sealbox.cluster.ear.EarNotReady": "xDriveSecurityNotReady",
    "sealbox.cluster.keytests.KeyProviderTestFailed": "xKmipKeyProviderTestFailed",
    "sealbox.cluster.rekey.RekeyInterrupted": "xRekeyInterrupted",
    "sealbox.cluster.storage.StorageUnavailable": "xVolumesUnavailable",
    "sealbox.cluster.trust.KeyFileError": "xAPINotPermitted",
    "sealbox.errors.AccountNotFound": "xAccountIDDoesNotExist",
    "sealbox.errors.AdminNotFound": "xClusterAdminIDDoesNotExist",
    "sealbox.errors.DriveNotFound": "xDriveIDDoesNotExist",
    "sealbox.errors.Exists": "xObjectExists",
    "sealbox.errors.InternalError": "xUnexpectedError",
    "sealbox.errors.InvalidParameter": "xInvalidParameter",
    "sealbox.errors.KeyProviderNotFound": "xKeyProviderIDDoesNotExist",
    "sealbox.errors.KeyServerNotFound": "xKeyServerIDDoesNotExist",
    "sealbox.errors.MissingParameter": "xMissingParameter",
    "sealbox.errors.NoSuchPath": "xDBNoSuchPath",
    "sealbox.errors.NodeNotFound": "xNodeIDDoesNotExist",
    "sealbox.errors.NotFound": "xObjectDoesNotExist",
    "sealbox.errors.NotPermitted": "xAPINotPermitted",
    "sealbox.errors.SealboxError": "xUnknown",
    "sealbox.errors.UnknownMethod": "xUnknownAPIMethod",
    "sealbox.errors.VolumeNotFound": "xVolumeIDDoesNotExist",
    "sealbox.kmip.certs.CertificateInvalid": "xInvalidParameter",
    "sealbox.kmip.errors.KmipClientCertificateRejected": "xKmipClientCertificateRejected",
    "sealbox.kmip.errors.KmipConnectionFailed": "xKmipConnectionFailed",
    "sealbox.kmip.errors.KmipConnectionLost": "xKmipConnectionLost",
    "sealbox.kmip.errors.KmipConnectionRefused": "xKmipConnectionRefused",
    "sealbox.kmip.errors.KmipConnectionTimedOut": "xKmipConnectionTimedOut",
    "sealbox.kmip.errors.KmipError": "xKmipError",
    "sealbox.kmip.errors.KmipInvalidConfiguration": "xInvalidParameter",
    "sealbox.kmip.errors.KmipNameResolutionFailed": "xKmipNameResolutionFailed",
    "sealbox.kmip.errors.KmipObjectNotFound": "xKmipObjectNotFound",
    "sealbox.kmip.errors.KmipOperationFailed": "xKmipOperationFailed",
    "sealbox.kmip.errors.KmipOperationTimedOut": "xKmipOperationTimedOut",
    "sealbox.kmip.errors.KmipPermissionDenied": "xKmipPermissionDenied",
    "sealbox.kmip.errors.KmipProtocolError": "xKmipProtocolError",
    "sealbox.kmip.errors.KmipServerCertificateNotTrusted": "xKmipServerCertificateNotTrusted",
    "sealbox.kmip.errors.KmipTlsHandshakeFailed": "xKmipTlsHandshakeFailed",
    "sealbox.kms.server.KmsError": "xKmsError",
    "sealbox.storage.crypto.SectorCipherError": "xSectorCipherFailed",
    "sealbox.storage.drive_errors.DriveError": "xDriveFailed",
    "sealbox.storage.drive_errors.DriveFormatUnsupported": "xDriveFormatUnsupported",
    "sealbox.storage.drive_errors.DriveHeaderCorrupt": "xDriveHeaderCorrupt",
    "sealbox.storage.drive_errors.DriveIOError": "xDriveIOFailed",
    "sealbox.storage.drive_errors.DriveKeySlotError": "xDriveKeySlotInvalid",
    "sealbox.storage.drive_errors.DriveKeyUnavailable": "xDriveKeyUnavailable",
    "sealbox.storage.drive_errors.DriveLocked": "xDriveLocked",
    "sealbox.storage.drive_errors.DriveTruncated": "xDriveTruncated",
    "sealbox.storage.keysource.KeyFileInsecure": "xKeyFileInsecure",
    "sealbox.storage.keysource.MasterKeyUnavailable": "xMasterKeyUnavailable",
    "sealbox.storage.keywrap.KeyUnwrapFailed": "xKeyUnwrapFailed",
    "sealbox.storage.keywrap.KeyWrapError": "xKeyWrapFailed",
    "sealbox.storage.sed_errors.SedAuthenticationFailed": "xSedAuthenticationFailed",
    "sealbox.storage.sed_errors.SedError": "xSedFailed",
    "sealbox.storage.sed_errors.SedFormatUnsupported": "xSedFormatUnsupported",
    "sealbox.storage.sed_errors.SedIOError": "xSedIOFailed",
    "sealbox.storage.sed_errors.SedLocked": "xSedLocked",
    "sealbox.storage.sed_errors.SedLockedOut": "xSedLockedOut",
    "sealbox.storage.sed_errors.SedMetadataCorrupt": "xSedMetadataCorrupt",
    "sealbox.storage.sed_errors.SedStateError": "xSedStateInvalid",
    "sealbox.storage.volume_errors.MetadataExists": "xSliceMetadataExists",
    "sealbox.storage.volume_errors.MetadataNotCurrent": "xSliceMetadataUnavailable",
    "sealbox.storage.volume_errors.MetadataUnavailable": "xSliceMetadataUnavailable",
    "sealbox.storage.volume_errors.NotEnoughSpace": "xNotEnoughSpace",
    "sealbox.storage.volume_errors.VolumeDataUnavailable": "xVolumeDataUnavailable",
    "sealbox.storage.volume_errors.VolumeRangeError": "xInvalidParameter",
}


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found.add(sub)
        found |= _all_subclasses(sub)
    return found


def _import_everything() -> None:
    for mod in pkgutil.walk_packages(sealbox.__path__, "sealbox."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)


def test_every_error_name_is_pinned() -> None:
    _import_everything()
    actual = {
        f"{c.__module__}.{c.__qualname__}": c.element_name
        for c in _all_subclasses(SealboxError) | {SealboxError}
        if not c.__module__.startswith("tests.")
    }
    assert actual == PINNED


def test_names_follow_element_style() -> None:
    for name in PINNED.values():
        assert name.startswith("x") and name[1].isupper(), name
