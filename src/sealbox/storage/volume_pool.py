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
from sealbox.storage.volume_errors import NotEnoughSpace

_EMPTY_CSUM_BYTES = CSUM_SECTORS * SECTOR_SIZE  # one slot's checksum sectors


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

    def take_pairs(self, count: int) -> list[tuple[Loc, Loc]]:
        """Up to ``count`` pairs of free slots, each on two nodes (see :func:`pick_pair`),
        fewer only if space runs out, their entries emptied.

        Free slots already have empty entries (emptied durably when freed); emptying them
        again costs little and protects against a slot dirtied without a map naming it. It
        costs one write per run of adjacent slots on a drive, not one per slot: a streaming
        writer's next chunks take their slots in order, so mapping 32 chunks ahead writes a
        few times per drive instead of 64 times in all (each small write waited for the GIL
        and for the drive file behind the data writes, which made mapping, not the data, the
        limit of a sequential write).

        Raises :class:`NotEnoughSpace` if not even one pair is free, and
        :class:`DriveWriteFailed` if a chosen drive cannot be written (every slot is then
        given back).
        """
        pairs: list[tuple[Loc, Loc]] = []
        while len(pairs) < count:
            try:
                a, b = pick_pair(DriveSpace(d, node, self._alloc[d].free)
                                 for d, (_, _, node) in self._drives.items())
            except NotEnoughSpace:
                if not pairs:
                    raise
                break
            pairs.append(((a, self._alloc[a].take()), (b, self._alloc[b].take())))
        locs = [loc for pair in pairs for loc in pair]
        try:
            self._empty(locs)
        except BaseException:
            self.give_back(locs)
            raise
        return pairs

    def _empty(self, locs: list[Loc]) -> None:
        by_drive: dict[int, list[int]] = {}
        for d, slot in locs:
            by_drive.setdefault(d, []).append(slot)
        for d, slots in by_drive.items():
            dev, layout, _ = self._drives[d]
            try:
                for first, count in _runs(sorted(slots)):
                    dev.write(layout.csum_sector(first), bytes(count * _EMPTY_CSUM_BYTES))
            except Exception as exc:  # the caller fails the drive out and chooses again
                raise DriveWriteFailed(d) from exc

    def take_one(self, avoid_nodes: set[int]) -> Loc:
        """One free slot on a node not in ``avoid_nodes``, for a re-replication target.

        Its entries are *not* emptied: the only user, ``ChunkIO.fill``, writes every entry of
        the slot (after the data) and the slot is mapped only after that write is flushed, so
        whatever entries the slot held before are overwritten before any map names it. A
        crash before the map commit leaves a free slot with stale entries, which
        :meth:`take_pairs` empties before it hands the slot to a writer.
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


def _runs(slots: list[int]) -> list[tuple[int, int]]:
    """(first, count) of each run of consecutive numbers in sorted ``slots``."""
    runs: list[tuple[int, int]] = []
    for slot in slots:
        if runs and runs[-1][0] + runs[-1][1] == slot:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((slot, 1))
    return runs
