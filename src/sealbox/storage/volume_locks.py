"""Striped locks over the lockable units of volumes.

The unit is a *group*: the 64 data sectors (256 KiB) whose checksum entries share one checksum
sector. A write rewrites exactly the checksum sectors of the groups it touches, so writers of
different groups of one chunk never touch the same bytes and may run at once (an NBD client
with many requests in flight often has several in one 1 MiB chunk); a reader must not see an
entry and a data sector from two moments of one write, so readers take the same locks.

Several locks are always taken in stripe order, each once, so holders never wait in a cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import TracebackType

from sealbox.storage.chunk import ENTRIES_PER_SECTOR, SECTORS_PER_CHUNK

GROUP_SECTORS = ENTRIES_PER_SECTOR
_GROUPS = SECTORS_PER_CHUNK // GROUP_SECTORS


class _Held:
    """Holds a sorted list of locks for the duration of a ``with`` block."""

    __slots__ = ("_locks",)

    def __init__(self, locks: list[threading.Lock]) -> None:
        self._locks = locks

    def __enter__(self) -> None:
        for lock in self._locks:
            lock.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for lock in reversed(self._locks):
            lock.release()


class RangeLocks:
    def __init__(self, stripes: int = 1024) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    def _held(self, keys: Iterable[tuple[int, int, int]]) -> _Held:
        n = len(self._locks)
        return _Held([self._locks[i] for i in sorted({hash(k) % n for k in keys})])

    def sectors(self, volume_id: int, chunk: int, first: int, count: int) -> _Held:
        """The groups holding sectors ``first .. first+count-1`` of a chunk."""
        groups = range(first // GROUP_SECTORS, (first + max(count, 1) - 1) // GROUP_SECTORS + 1)
        return self._held((volume_id, chunk, g) for g in groups)

    def chunks(self, volume_id: int, chunks: Iterable[int]) -> _Held:
        """Every group of the given chunks."""
        return self._held((volume_id, c, g) for c in chunks for g in range(_GROUPS))
