"""Block devices for storage tests."""

from __future__ import annotations

import errno

from sealbox.storage.filedev import FileBlockDevice


class FlakyDevice:
    """A device that can be made to fail every call, like a pulled drive."""

    def __init__(self, dev: FileBlockDevice) -> None:
        self.dev = dev
        self.broken = False
        self.failing_flushes = 0  # flushes to fail after the writes before them landed

    @property
    def sector_count(self) -> int:
        return self.dev.sector_count

    def _check(self) -> None:
        if self.broken:
            raise OSError(errno.EIO, "drive gone")

    def read(self, sector: int, count: int) -> bytes:
        self._check()
        return self.dev.read(sector, count)

    def write(self, sector: int, data: bytes) -> None:
        self._check()
        self.dev.write(sector, data)

    def flush(self) -> None:
        self._check()
        if self.failing_flushes:
            self.failing_flushes -= 1
            raise OSError(errno.EIO, "flush failed")
        self.dev.flush()
