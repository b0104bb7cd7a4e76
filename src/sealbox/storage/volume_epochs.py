"""Flush epochs: which sectors have been written since the last completed flush.

A checksum entry's ``durable`` token must name the content that the last completed flush made
durable. So each write needs to know, per sector, whether the sector was written since that
flush ("dirty") or not ("clean"). Writes are numbered by the epoch they run in; a flush closes
the current epoch, waits for the writes still running in it, syncs the devices, and then
declares it durable. Only sectors written since open are tracked (at open, every device is
synced, so everything on disk counts as flushed).
"""

from __future__ import annotations

import threading
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from sealbox.storage.chunk import SECTORS_PER_CHUNK

ChunkKey = tuple[int, int]


class WriteEpochs:
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._epoch = 1
        self._durable = 0
        self._running: Counter[int] = Counter()
        self._flush_lock = threading.Lock()
        self._last: dict[ChunkKey, array[int]] = {}

    @contextmanager
    def writing(self, key: ChunkKey, first: int, count: int) -> Iterator[list[bool]]:
        """Around a write of sectors ``first .. first+count-1`` of a chunk (their locks held):
        yields the per-sector clean flags, and on success records the sectors as dirty."""
        with self._cv:
            epoch = self._epoch
            self._running[epoch] += 1
        last = self._last.setdefault(key, array("Q", bytes(8 * SECTORS_PER_CHUNK)))
        try:
            newest = max(last[first:first + count])
            if self._durable < newest < epoch:
                # Written in an epoch whose flush is still running: once it completes that
                # content is the durable one, and our entry must name it, so wait for it.
                with self._cv:
                    self._cv.wait_for(lambda: self._durable >= newest)
            durable = self._durable
            try:
                yield [last[first + i] <= durable for i in range(count)]
            finally:  # even a failed write may have reached some copy: count it as written
                last[first:first + count] = array("Q", [epoch]) * count
        finally:
            with self._cv:
                self._running[epoch] -= 1
                if not self._running[epoch]:
                    del self._running[epoch]
                self._cv.notify_all()

    @property
    def tracked(self) -> int:
        """How many chunks have per-sector tracking (2 KiB each) until the next flush."""
        return len(self._last)

    def flush(self, sync: Callable[[], None],
              lock_chunk: Callable[[ChunkKey], AbstractContextManager[None]]) -> None:
        """Close the current epoch, wait for its writes, ``sync`` the devices, mark it durable.

        The epoch is declared durable even if ``sync`` raises: ``sync`` has by then failed out
        the drives that could not sync, so what remains on the live drives is durable.
        """
        with self._flush_lock:
            with self._cv:
                epoch = self._epoch
                self._epoch += 1
                self._cv.wait_for(lambda: all(e > epoch for e in self._running))
            try:
                sync()
            finally:
                with self._cv:
                    self._durable = epoch
                    self._cv.notify_all()
            self._forget_clean(lock_chunk)

    def _forget_clean(self, lock_chunk: Callable[[ChunkKey], AbstractContextManager[None]],
                      ) -> None:
        """Drop the tracking of chunks with no dirty sector, under their lock so that a
        concurrent writer never updates an array that is being dropped."""
        for key in list(self._last):
            with lock_chunk(key):
                last = self._last.get(key)
                if last is not None and max(last) <= self._durable:
                    del self._last[key]
