"""A plain-file :class:`~sealbox.storage.blockdev.BlockDevice`: no encryption, no header.

Used by the volume engine's tests and by benchmarks that want the engine without the crypto
below it. The file is sparse: creating a 1 TiB device costs nothing until sectors are written.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sealbox.storage.blockdev import SECTOR_SIZE


class FileBlockDevice:
    """Sectors of a regular file, read and written with ``pread``/``pwrite``.

    ``pread``/``pwrite`` take an explicit offset, so one fd is shared by every thread without a
    lock. Reads past the written part of a sparse file return zeros, as a fresh disk would.
    """

    def __init__(self, path: str | os.PathLike[str], sector_count: int, *,
                 create: bool = False) -> None:
        if sector_count <= 0:
            raise ValueError("sector_count must be positive")
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        self._path = Path(path)
        self._fd = os.open(self._path, flags, 0o600)
        self._sector_count = sector_count
        self._closed = False
        self._close_lock = threading.Lock()
        if create:
            os.ftruncate(self._fd, sector_count * SECTOR_SIZE)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def sector_count(self) -> int:
        return self._sector_count

    def _check(self, sector: int, count: int) -> None:
        if self._closed:
            raise OSError("device is closed")
        if sector < 0 or count < 0 or sector + count > self._sector_count:
            raise ValueError(f"sectors {sector}+{count} outside device of {self._sector_count}")

    def read(self, sector: int, count: int) -> bytes:
        self._check(sector, count)
        want = count * SECTOR_SIZE
        data = os.pread(self._fd, want, sector * SECTOR_SIZE)
        if len(data) < want:  # a file shorter than its nominal size reads as zeros past EOF
            data += bytes(want - len(data))
        return data

    def write(self, sector: int, data: bytes) -> None:
        if len(data) % SECTOR_SIZE:
            raise ValueError("writes must be whole sectors")
        self._check(sector, len(data) // SECTOR_SIZE)
        view = memoryview(data)
        offset = sector * SECTOR_SIZE
        while view:  # pwrite may be short (signals, huge writes); finish the job
            done = os.pwrite(self._fd, view, offset)
            view = view[done:]
            offset += done

    def flush(self) -> None:
        if self._closed:
            raise OSError("device is closed")
        os.fdatasync(self._fd)

    def close(self) -> None:
        with self._close_lock:
            if not self._closed:
                self._closed = True
                os.close(self._fd)
