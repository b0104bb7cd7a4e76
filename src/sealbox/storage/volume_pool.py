"""The live block drives of an engine: their devices, layouts and free slots.

Callers serialise changes with the metadata store's lock; lookups need no lock.
"""

from __future__ import annotations

from collections.abc import Iterable

from sealbox.storage.blockdev import SECTOR_SIZE, BlockDevice
from sealbox.storage.chunk import CSUM_SECTORS, BlockLayout
from sealbox.storage.chunk_io import Copy
from sealbox.storage.placement import DriveSpace, SlotAllocator, pick_one, pick_pair
from sealbox.storage.slice_ops import Loc

_EMPTY_CSUM = bytes(CSUM_SECTORS * SECTOR_SIZE)


class DriveWriteFailed(Exception):
    """A block drive failed a write while its slot was being prepared (internal)."""

    def __init__(self, drive_id: int) -> None:
        super().__init__(f"block drive {drive_id} failed a write")
        self.drive_id = drive_id


def clear_checksum_area(dev: BlockDevice) -> None:
    """Empty every slot's checksum entries, durably (a fresh encrypted drive reads as noise,
    and a free slot must read as zeros when it is allocated)."""
    total = BlockLayout.for_device(dev.sector_count).slots * CSUM_SECTORS
    step = 256
    for first in range(0, total, step):
        dev.write(first, bytes(min(step, total - first) * SECTOR_SIZE))
    dev.flush()


class BlockPool:
    def __init__(self) -> None:
        self._drives: dict[int, tuple[BlockDevice, BlockLayout, int]] = {}
        self._alloc: dict[int, SlotAllocator] = {}

    def add(self, drive_id: int, node_id: int, dev: BlockDevice, used: Iterable[int],
            sector_count: int | None = None) -> None:
        """Use ``dev``, laid out for ``sector_count`` sectors: the size recorded when the
        drive was taken in, so that a device that has since grown keeps its layout."""
        layout = BlockLayout.for_device(sector_count or dev.sector_count)
        self._drives[drive_id] = (dev, layout, node_id)
        self._alloc[drive_id] = SlotAllocator(layout.slots, used)

    def remove(self, drive_id: int) -> bool:
        """Stop using a drive; False if it was not in use."""
        self._alloc.pop(drive_id, None)
        return self._drives.pop(drive_id, None) is not None

    def __contains__(self, drive_id: int) -> bool:
        return drive_id in self._drives

    def copy(self, drive_id: int, slot: int) -> Copy | None:
        entry = self._drives.get(drive_id)
        if entry is None:
            return None
        dev, layout, _ = entry
        return Copy(drive_id, slot, dev, layout.csum_sector(slot), layout.data_sector(slot))

    def used_slots(self, drive_id: int) -> int:
        alloc = self._alloc.get(drive_id)
        return alloc.used if alloc else 0

    def total_used_slots(self) -> int:
        return sum(a.used for a in self._alloc.values())

    def take_pair(self) -> tuple[Loc, Loc]:
        """Two free slots on two nodes (see :func:`pick_pair`), their entries emptied.

        Free slots already have empty entries (emptied durably when freed); emptying them
        again costs little and protects against a slot dirtied without a map naming it.
        Raises :class:`DriveWriteFailed` if a chosen drive cannot be written.
        """
        a, b = pick_pair(DriveSpace(d, node, self._alloc[d].free)
                         for d, (_, _, node) in self._drives.items())
        locs = ((a, self._alloc[a].take()), (b, self._alloc[b].take()))
        try:
            for loc in locs:
                self._empty(loc)
        except BaseException:
            self.give_back(locs)
            raise
        return locs

    def _empty(self, loc: Loc) -> None:
        dev, layout, _ = self._drives[loc[0]]
        try:
            dev.write(layout.csum_sector(loc[1]), _EMPTY_CSUM)
        except Exception as exc:  # the caller fails the drive out and chooses again
            raise DriveWriteFailed(loc[0]) from exc

    def take_one(self, avoid_nodes: set[int]) -> Loc:
        """One free slot on a node not in ``avoid_nodes``, for a re-replication target.

        Its entries are *not* emptied: the only user, ``ChunkIO.fill``, writes every entry of
        the slot (after the data) and the slot is mapped only after that write is flushed, so
        whatever entries the slot held before are overwritten before any map names it. A
        crash before the map commit leaves a free slot with stale entries, which
        :meth:`take_pair` empties before it hands the slot to a writer.
        """
        d = pick_one((DriveSpace(d, node, self._alloc[d].free)
                      for d, (_, _, node) in self._drives.items()), avoid_nodes)
        return (d, self._alloc[d].take())

    def node_of(self, drive_id: int) -> int | None:
        entry = self._drives.get(drive_id)
        return entry[2] if entry else None

    def give_back(self, locs: Iterable[Loc]) -> None:
        for d, slot in locs:
            if d in self._alloc:
                self._alloc[d].give_back(slot)

    def devices(self) -> list[tuple[int, BlockDevice]]:
        return [(d, dev) for d, (dev, _, _) in self._drives.items()]
