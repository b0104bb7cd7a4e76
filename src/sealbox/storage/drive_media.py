"""What a :class:`~sealbox.storage.drive.Drive` is written on: a file, or a self-encrypting drive.

A ``Drive`` addresses its media in bytes (header copies at 0 and 4096, data area from 32 KiB),
always in whole 4 KiB sectors. Two media exist:

* :class:`FileMedia` - a file or block device, positioned I/O on one descriptor (the drive as
  earlier sealbox versions wrote it, and the engine's tests);
* :class:`SedMedia` - the user area of an emulated self-encrypting drive
  (:class:`~sealbox.storage.sed.SelfEncryptingDrive`), itself on a file. This is what the
  cluster provisions: ``Drive -> SED -> file``, the order ``docs/sed.md`` explains.

Both are safe for concurrent I/O from many threads (no lock on the data path).
"""

from __future__ import annotations

import os
from typing import Protocol

from sealbox.storage import drive_io
from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.drive_errors import DriveError
from sealbox.storage.sed import SelfEncryptingDrive

Buffer = bytes | bytearray | memoryview


class DriveMedia(Protocol):
    """Byte-addressed storage under a drive; offsets and sizes are whole sectors."""

    def size(self) -> int: ...
    def read_into(self, view: memoryview, offset: int) -> None: ...
    def read_at(self, size: int, offset: int) -> bytes: ...
    def write_all(self, data: Buffer, offset: int) -> None: ...
    def sync_data(self) -> None: ...
    def sync_all(self) -> None: ...
    def close(self) -> None: ...


class FileMedia:
    """A file or block device: ``pread``/``pwrite`` on one descriptor."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @property
    def fd(self) -> int:
        return self._fd

    def size(self) -> int:
        return drive_io.device_size(self._fd)

    def read_into(self, view: memoryview, offset: int) -> None:
        drive_io.read_into(self._fd, view, offset)

    def read_at(self, size: int, offset: int) -> bytes:
        return drive_io.read_at(self._fd, size, offset)

    def write_all(self, data: Buffer, offset: int) -> None:
        drive_io.write_all(self._fd, data, offset)

    def sync_data(self) -> None:
        drive_io.sync_data(self._fd)

    def sync_all(self) -> None:
        drive_io.sync_all(self._fd)

    def resize(self, size: int) -> None:
        drive_io.resize(self._fd, size)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class SedMedia:
    """The user area of a self-encrypting drive. Closing it locks the SED (the MEK leaves
    memory) and closes the file under it."""

    def __init__(self, sed: SelfEncryptingDrive, file: FileMedia) -> None:
        self.sed = sed
        self._file = file

    @staticmethod
    def _sector(offset: int, size: int) -> int:
        if offset % SECTOR_SIZE or size % SECTOR_SIZE:
            raise DriveError("self-encrypting drive I/O must be whole 4096-byte sectors")
        return offset // SECTOR_SIZE

    def size(self) -> int:
        return self.sed.sector_count * SECTOR_SIZE

    def read_into(self, view: memoryview, offset: int) -> None:
        self.sed.read_into(self._sector(offset, len(view)), view)

    def read_at(self, size: int, offset: int) -> bytes:
        buf = bytearray(size)
        self.read_into(memoryview(buf), offset)
        return bytes(buf)

    def write_all(self, data: Buffer, offset: int) -> None:
        self.sed.write(self._sector(offset, len(data)), data)

    def sync_data(self) -> None:
        self.sed.flush()

    def sync_all(self) -> None:
        self.sed.flush()

    def close(self) -> None:
        self.sed.power_off()
        self._file.close()


class FileSectors:
    """The sectors of a :class:`FileMedia`: the media a self-encrypting drive is made on."""

    def __init__(self, file: FileMedia) -> None:
        self._file = file
        self._count = file.size() // SECTOR_SIZE

    @property
    def sector_count(self) -> int:
        return self._count

    def read(self, sector: int, count: int) -> bytes:
        return self._file.read_at(count * SECTOR_SIZE, sector * SECTOR_SIZE)

    def read_into(self, sector: int, view: memoryview) -> None:
        self._file.read_into(view, sector * SECTOR_SIZE)

    def write(self, sector: int, data: Buffer) -> None:
        self._file.write_all(data, sector * SECTOR_SIZE)

    def flush(self) -> None:
        self._file.sync_data()
