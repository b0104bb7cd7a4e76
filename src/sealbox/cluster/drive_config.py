"""GetDriveConfig: the drives attached to the nodes, as the drives themselves report them.

ListDrives says what the cluster has recorded about a drive; GetDriveConfig says what the
hardware says: whether the device is there, whether it is self-encrypting, whether locking is
enabled, whether it is locked right now and whether it has refused too many wrong keys. An
administrator checks it after enabling hardware encryption, and when drives stay locked
because their keys cannot be fetched.

A drive that is powered on (in service, or waiting locked for its key) is asked directly. Any
other drive file is read without powering it on (:func:`sealbox.storage.disk.inspect`): a
drive with locking enabled that nobody has unlocked is locked.

Element answers GetDriveConfig per node (the node API on port 442 of each node). sealbox
serves all its nodes from one endpoint, so the answer covers every node, or the one named by
the optional ``nodeID`` (a sealbox addition).
"""

from __future__ import annotations

import logging
import os
import stat
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sealbox import __version__
from sealbox.cluster.topology import DriveRole
from sealbox.errors import SealboxError
from sealbox.storage.disk import inspect
from sealbox.storage.sed import SelfEncryptingDrive
from sealbox.store.base import Doc

log = logging.getLogger(__name__)

VENDOR = "sealbox"
SED_PRODUCT = "sealbox self-encrypting drive (emulated)"
PLAIN_PRODUCT = "sealbox drive"

# How a powered-on drive is found: drive ID -> its SED, or None if it is not powered on.
PoweredSed = Callable[[int], SelfEncryptingDrive | None]


@dataclass(frozen=True)
class Security:
    """A drive's security state, as the drive reports it."""

    supported: bool = False
    enabled: bool = False
    locked: bool = False
    at_maximum: bool = False  # wrong keys exhausted: refuses every key until power-off
    ident: uuid.UUID | None = None
    readable: bool = True  # False: its metadata does not read, so nothing above is known


def drive_config(drives: Iterable[Doc], powered_sed: PoweredSed) -> Doc:
    """The Element ``DrivesConfigInfo`` of ``drives`` (their ListDrives records)."""
    out: list[Doc] = []
    expected = {DriveRole.SLICE: 0, DriveRole.BLOCK: 0}
    actual = dict(expected)
    for doc in sorted(drives, key=lambda d: d["driveID"]):
        info = _drive(doc, powered_sed)
        role = DriveRole(doc["role"])
        expected[role] += 1
        actual[role] += info["connected"]
        out.append(info)
    return {
        "drives": out,
        "numBlockActual": actual[DriveRole.BLOCK],
        "numBlockExpected": expected[DriveRole.BLOCK],
        "numSliceActual": actual[DriveRole.SLICE],
        "numSliceExpected": expected[DriveRole.SLICE],
        "numTotalActual": sum(actual.values()),
        "numTotalExpected": sum(expected.values()),
    }


def _drive(doc: Doc, powered_sed: PoweredSed) -> Doc:
    path = str(doc["path"])
    link = os.path.realpath(path)
    connected, device = _device(path)
    security = _security(doc["driveID"], path, powered_sed) if connected else Security()
    # A missing or unreadable drive has no UUID to report: the nil UUID says so.
    ident = security.ident or uuid.UUID(int=0)
    return {
        "canonicalName": os.path.basename(link),
        "connected": connected,
        "dev": device,
        "devPath": path,
        "driveType": "Slice" if doc["role"] == DriveRole.SLICE else "Block",
        "name": doc["serial"],
        "path": path,
        "pathLink": link,
        "product": SED_PRODUCT if security.supported else PLAIN_PRODUCT,
        "scsiCompatId": doc["serial"],
        "scsiState": ("Running" if security.readable else "Unknown") if connected
        else "Missing",
        "securityAtMaximum": security.at_maximum,
        "securityEnabled": security.enabled,
        "securityFrozen": False,  # emulated drives have no freeze lock
        "securityLocked": security.locked,
        "securitySupported": security.supported,
        "serial": doc["serial"],
        "size": doc["capacity"],
        "slot": doc["slot"],
        "smartSsdWriteCapable": False,
        "uuid": str(ident),
        "vendor": VENDOR,
        "version": __version__,
    }


def _device(path: str) -> tuple[bool, int]:
    """(present, device number): the device number of a block device, 0 for a file."""
    try:
        st = os.stat(path)
    except OSError:
        return False, 0
    return True, st.st_rdev if stat.S_ISBLK(st.st_mode) else 0


def _security(drive_id: int, path: str, powered_sed: PoweredSed) -> Security:
    sed = powered_sed(drive_id)
    if sed is not None:
        return Security(True, sed.locking_enabled, sed.locked, sed.attempts_remaining == 0,
                        sed.media_id)
    try:
        found = inspect(path)
    except (SealboxError, OSError) as e:
        # Unreadable metadata: the drive is there but says nothing; ListDrives and the
        # drive faults tell why.
        log.info("drive %s: metadata unreadable for GetDriveConfig: %s", drive_id, e)
        return Security(readable=False)
    return Security(found.self_encrypting, found.locking_enabled, found.locking_enabled,
                    False, found.ident)
