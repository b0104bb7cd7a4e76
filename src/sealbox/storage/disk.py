"""A drive file as the cluster provisions it: an emulated self-encrypting drive (SED) with the
sealbox :class:`~sealbox.storage.drive.Drive` on its user area (``Drive -> SED -> file``).

A ``Disk`` is one power-on of that stack. :meth:`Disk.open` powers the SED on; with locking
enabled it comes up locked, and the ``Drive`` inside (even its header) cannot be read until
:meth:`Disk.unlock` with the drive's authentication key (AK). Files written by sealbox before
drives were self-encrypting hold a ``Drive`` at offset 0; they open as plain disks
(:attr:`Disk.sed` is None) and cannot take hardware encryption.

Ownership: the ``Drive`` returned by :meth:`Disk.drive` owns the file from then on (closing the
drive powers the SED off and closes the file); :func:`sed_of` finds the SED of an open drive.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sealbox.secrets import Secret
from sealbox.storage import drive_io
from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.drive import Drive
from sealbox.storage.drive_errors import DriveError, DriveTruncated
from sealbox.storage.drive_media import FileMedia, FileSectors, SedMedia
from sealbox.storage.header import DATA_OFFSET_SECTORS
from sealbox.storage.header import choose_current as choose_header
from sealbox.storage.sed import DEFAULT_MAX_ATTEMPTS, SelfEncryptingDrive
from sealbox.storage.sed_format import LARGE_UNIT_SECTORS, METADATA_COPIES, Locking
from sealbox.storage.sed_format import choose_current as choose_sed_metadata

SED_MAGIC = b"SEALBSED"


class Disk:
    """One power-on of a drive file. Build with :meth:`create` or :meth:`open`."""

    def __init__(self, path: str, file: FileMedia, sed: SelfEncryptingDrive | None) -> None:
        self._path = path
        self._file = file
        self._sed = sed
        self._drive: Drive | None = None

    @classmethod
    def create(cls, path: str | Path, size: int, *,
               drive_uuid: uuid.UUID | None = None) -> Disk:
        """A new sparse drive file of ``size`` bytes: a SED (locking off, like a new Opal
        drive) holding a formatted, unencrypted ``Drive``. The SED's media id is the drive's
        UUID, so both layers name the drive the same way."""
        name = os.fspath(path)
        ident = drive_uuid or uuid.uuid4()
        if size % SECTOR_SIZE or size <= 16 * SECTOR_SIZE:
            raise DriveError("a drive size must be a multiple of 4096 above 64 KiB")
        file = FileMedia(drive_io.open_drive(name, create=True))
        try:
            file.resize(size)
            sed = SelfEncryptingDrive.format(FileSectors(file), media_id=ident)
            disk = cls(name, file, sed)
            disk._adopt(Drive.create_on(SedMedia(sed, file), name, drive_uuid=ident,
                                        data_offset=drive_data_offset(sed)))
            drive_io.sync_directory(os.path.dirname(os.path.abspath(name)))
        except BaseException:
            file.close()
            os.unlink(name)  # no half-formatted drive file is left behind
            raise
        return disk

    @classmethod
    def open(cls, path: str | Path, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Disk:
        """Power on: a SED comes up locked if its locking is enabled. Raises the SED's or
        the drive's errors (corrupt metadata, I/O)."""
        name = os.fspath(path)
        file = FileMedia(drive_io.open_drive(name, create=False))
        try:
            if file.size() >= 2 * SECTOR_SIZE and _is_sed(file.read_at(2 * SECTOR_SIZE, 0)):
                return cls(name, file, SelfEncryptingDrive.open(FileSectors(file),
                                                                max_attempts))
            return cls(name, file, None)
        except BaseException:
            file.close()
            raise

    def _adopt(self, drive: Drive) -> Disk:
        self._drive = drive
        return self

    # --- state ----------------------------------------------------------------------------
    @property
    def path(self) -> str:
        return self._path

    @property
    def sed(self) -> SelfEncryptingDrive | None:
        return self._sed

    @property
    def locked(self) -> bool:
        return self._sed is not None and self._sed.locked

    def unlock(self, ak: Secret) -> None:
        """Unlock the SED with its AK: one attempt, counted by the drive if wrong."""
        if self._sed is not None:
            self._sed.unlock(ak)

    def drive(self) -> Drive:
        """The sealbox drive inside (opened once). Raises ``SedLocked`` while locked."""
        if self._drive is None:
            if self._sed is None:
                self._drive = Drive.open_on(self._file, self._path)
            else:
                self._drive = Drive.open_on(SedMedia(self._sed, self._file), self._path)
        return self._drive

    def secure_erase(self) -> Drive:
        """Replace the SED's MEK (every byte written before, the drive header included,
        becomes unreadable; no AK is needed, locked or not) and format a new drive on it,
        under the same UUID. A plain disk is recreated as a new file instead."""
        if self._sed is None:
            raise DriveError("a plain drive has no media key to replace")
        ident = self._sed.media_id
        self._sed.secure_erase()
        self._drive = Drive.create_on(SedMedia(self._sed, self._file), self._path,
                                      drive_uuid=ident, data_offset=drive_data_offset(self._sed))
        return self._drive

    def close(self) -> None:
        if self._drive is not None:
            self._drive.close()
            self._drive = None
        else:
            if self._sed is not None:
                self._sed.power_off()
            self._file.close()

    def __enter__(self) -> Disk:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def drive_data_offset(sed: SelfEncryptingDrive) -> int:
    """Where a new ``Drive`` on ``sed`` starts its data area (in SED user sectors): the first
    offset from 8 on that puts drive data sector 0 on a media sector that starts a 1 MiB XTS
    data unit of the SED (248 after the SED's 8 metadata sectors, so media sector 256).

    Why: the engine writes and reads 1 MiB chunks at multiples of 256 drive sectors, each one
    XTS data unit of the drive's own cipher. Aligned this way a chunk is one data unit of the
    SED as well: one cipher call whose iv is the unit number, where an unaligned chunk
    straddled two units and needed a starting iv computed in Python (two AES blocks and a
    GF(2**128) product) for every request. It costs 240 sectors (960 KiB) per drive.
    A user area too small to hold a data unit after that offset (drive files under 2 MiB,
    in tests and benchmarks) keeps the offset 8."""
    aligned = DATA_OFFSET_SECTORS + (
        -(sed.metadata.data_offset + DATA_OFFSET_SECTORS) % LARGE_UNIT_SECTORS)
    return aligned if sed.sector_count >= aligned + LARGE_UNIT_SECTORS else DATA_OFFSET_SECTORS


def sed_of(drive: Drive) -> SelfEncryptingDrive | None:
    """The self-encrypting drive under an open drive, if any."""
    media = drive.media
    return media.sed if isinstance(media, SedMedia) else None


@dataclass(frozen=True)
class DiskProbe:
    """What a drive file says about itself, read without powering it on."""

    ident: uuid.UUID  # the SED's media id, or the header UUID of a plain drive
    self_encrypting: bool
    locking_enabled: bool  # a SED whose MEK is wrapped under an AK (comes up locked)


def inspect(path: str | Path) -> DiskProbe:
    """Read a drive file's identity and locking state without powering it on or unlocking it
    (so a health check or a listing never disturbs the drive in service). Raises the
    format's corruption errors, ``DriveTruncated`` (the file is shorter than the data area it
    says it has) or ``DriveIOError``."""
    name = os.fspath(path)
    file = FileMedia(drive_io.open_drive(name, create=False, read_only=True))
    try:
        raw = file.read_at(METADATA_COPIES * SECTOR_SIZE, 0)
        copies = [raw[i * SECTOR_SIZE : (i + 1) * SECTOR_SIZE] for i in range(METADATA_COPIES)]
        if _is_sed(raw):
            meta = choose_sed_metadata(copies)
            found = DiskProbe(meta.media_id, True, meta.locking is Locking.ON)
            end = meta.data_offset + meta.sector_count
        else:
            header = choose_header(copies)
            found = DiskProbe(header.drive_uuid, False, False)
            end = header.data_offset + header.sector_count
        if file.size() < end * SECTOR_SIZE:
            raise DriveTruncated(f"{name} is smaller than its data area")
        return found
    finally:
        file.close()


def probe(path: str | Path) -> uuid.UUID:
    """The UUID a drive file answers to (see :func:`inspect`)."""
    return inspect(path).ident


def _is_sed(first_two_sectors: bytes) -> bool:
    """Either metadata copy carries the SED magic (one may be torn by a crash)."""
    return SED_MAGIC in (first_two_sectors[:8], first_two_sectors[SECTOR_SIZE : SECTOR_SIZE + 8])
