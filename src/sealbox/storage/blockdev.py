"""The seam between the storage engine's layers: a device of fixed-size sectors.

A plain drive file, an encrypted drive's data area and a self-encrypting drive all present
this interface, so that the replication and volume code above never knows which it has.
"""

from __future__ import annotations

from typing import Protocol

SECTOR_SIZE = 4096


class BlockDevice(Protocol):
    """Sector-addressed storage. ``data`` lengths are whole multiples of :data:`SECTOR_SIZE`."""

    @property
    def sector_count(self) -> int: ...

    def read(self, sector: int, count: int) -> bytes:
        """Read ``count`` sectors starting at ``sector``; raises on I/O or integrity failure."""
        ...

    def write(self, sector: int, data: bytes) -> None:
        """Write whole sectors starting at ``sector``; durable only after :meth:`flush`."""
        ...

    def flush(self) -> None:
        """Make every completed write durable (fdatasync)."""
        ...
