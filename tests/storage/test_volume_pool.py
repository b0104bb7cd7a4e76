"""Slots for new chunks: two nodes per chunk, emptied entries, few writes, nothing leaked."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.chunk import CSUM_SECTORS, SECTORS_PER_CHUNK, BlockLayout
from sealbox.storage.filedev import FileBlockDevice
from sealbox.storage.volume_errors import NotEnoughSpace
from sealbox.storage.volume_pool import BlockPool, DriveWriteFailed
from tests.storage.devices import FlakyDevice

SLOTS = 12
SECTORS = SLOTS * (SECTORS_PER_CHUNK + CSUM_SECTORS) + SECTORS_PER_CHUNK


class CountingDevice(FlakyDevice):
    def __init__(self, dev: FileBlockDevice) -> None:
        super().__init__(dev)
        self.writes: list[tuple[int, int]] = []  # (first sector, sectors)

    def write(self, sector: int, data: bytes) -> None:
        self.writes.append((sector, len(data) // SECTOR_SIZE))
        super().write(sector, data)


def _pool(tmp_path: Path, nodes: int = 2) -> tuple[BlockPool, dict[int, CountingDevice]]:
    pool, devs = BlockPool(), {}
    for d in range(1, nodes + 1):
        dev = CountingDevice(FileBlockDevice(tmp_path / f"b{d}", SECTORS, create=True))
        # entries left dirty in every slot, as by a write whose map never committed
        dev.dev.write(0, b"\xee" * (BlockLayout.for_device(SECTORS).slots * CSUM_SECTORS
                                    * SECTOR_SIZE))
        pool.add(d, node_id=d, dev=dev, used=())
        devs[d] = dev
    return pool, devs


def test_pairs_are_on_two_nodes_with_every_entry_emptied_in_one_write_per_run(
        tmp_path: Path) -> None:
    pool, devs = _pool(tmp_path)
    layout = BlockLayout.for_device(SECTORS)
    pairs = pool.take_pairs(8)
    assert len(pairs) == 8
    assert all(a[0] != b[0] for a, b in pairs)
    locs = [loc for pair in pairs for loc in pair]
    assert len(set(locs)) == 16
    for d, slot in locs:
        entries = devs[d].read(layout.csum_sector(slot), CSUM_SECTORS)
        assert entries == bytes(CSUM_SECTORS * SECTOR_SIZE)
    # each drive got slots 0-7: one write of their 32 checksum sectors, not eight
    assert {d: dev.writes for d, dev in devs.items()} == {1: [(0, 32)], 2: [(0, 32)]}
    # the slots after them were left as they were
    assert devs[1].read(layout.csum_sector(8), 1) == b"\xee" * SECTOR_SIZE


def test_fewer_pairs_when_space_runs_out_and_none_is_an_error(tmp_path: Path) -> None:
    pool, _ = _pool(tmp_path)
    slots = BlockLayout.for_device(SECTORS).slots
    assert len(pool.take_pairs(slots + 5)) == slots
    with pytest.raises(NotEnoughSpace):
        pool.take_pairs(1)


def test_a_drive_that_fails_the_emptying_gets_every_slot_back(tmp_path: Path) -> None:
    pool, devs = _pool(tmp_path, nodes=3)
    devs[2].broken = True
    with pytest.raises(DriveWriteFailed) as failed:
        pool.take_pairs(6)
    assert failed.value.drive_id == 2
    assert pool.total_used_slots() == 0  # nothing taken stays taken
    pool.remove(2)  # what the engine does: fail the drive, choose again
    pairs = pool.take_pairs(6)
    assert len(pairs) == 6 and {d for pair in pairs for d, _ in pair} == {1, 3}
