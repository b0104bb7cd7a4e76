"""Where chunk copies and metadata mirrors go.

Both choices are pure functions of the engine's state (free slots, drive ids, node ids), so the
same history always gives the same layout, which keeps tests and bug reports reproducible.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sealbox.storage.volume_errors import NotEnoughSpace


@dataclass(frozen=True)
class DriveSpace:
    drive_id: int
    node_id: int
    free: int


def pick_pair(drives: Iterable[DriveSpace]) -> tuple[int, int]:
    """Two drives on different nodes for a new chunk: the one with the most free slots, then
    the one with the most free slots on any other node (ties go to the lower drive id).

    Raises :class:`NotEnoughSpace` unless two nodes have a drive with a free slot.
    """
    ranked = sorted((d for d in drives if d.free > 0), key=lambda d: (-d.free, d.drive_id))
    if ranked:
        first = ranked[0]
        for other in ranked[1:]:
            if other.node_id != first.node_id:
                return first.drive_id, other.drive_id
    raise NotEnoughSpace(
        "not enough space: every chunk needs two copies on block drives of two different "
        "nodes, and fewer than two nodes have a block drive with free space")


def pick_one(drives: Iterable[DriveSpace], avoid_nodes: set[int]) -> int:
    """A drive for a replacement copy: the one with the most free slots on a node that holds
    no other copy of the chunk. Raises :class:`NotEnoughSpace` if there is none."""
    ranked = sorted((d for d in drives if d.free > 0 and d.node_id not in avoid_nodes),
                    key=lambda d: (-d.free, d.drive_id))
    if not ranked:
        raise NotEnoughSpace("no block drive with free space on a node without a copy")
    return ranked[0].drive_id


def pick_mirrors(slice_drives: Sequence[tuple[int, int]]) -> list[int]:
    """The slice drives (``(drive_id, node_id)`` pairs) that hold the metadata: the lowest drive
    id of each of the first two nodes in drive-id order."""
    chosen: list[int] = []
    nodes: set[int] = set()
    for drive_id, node_id in sorted(slice_drives):
        if node_id not in nodes:
            chosen.append(drive_id)
            nodes.add(node_id)
        if len(chosen) == 2:
            break
    return chosen


class SlotAllocator:
    """Free slots of one block drive; hands out the lowest free slot first, so a drive fills
    from its start and stays compact."""

    def __init__(self, slots: int, used: Iterable[int] = ()) -> None:
        self.slots = slots
        self._used = set(used)
        self._high = max(self._used, default=-1) + 1  # every slot at or above is free
        self._holes = [s for s in range(self._high) if s not in self._used]
        heapq.heapify(self._holes)

    @property
    def free(self) -> int:
        return self.slots - len(self._used)

    @property
    def used(self) -> int:
        return len(self._used)

    def take(self) -> int:
        if self._holes:
            slot = heapq.heappop(self._holes)
        elif self._high < self.slots:
            slot = self._high
            self._high += 1
        else:
            raise NotEnoughSpace("block drive is full")
        self._used.add(slot)
        return slot

    def give_back(self, slot: int) -> None:
        if slot in self._used:
            self._used.remove(slot)
            heapq.heappush(self._holes, slot)
