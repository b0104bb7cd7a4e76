"""The engine-side drive changes of volume_repair, in-process: batched re-replication with
progress, removal that never leaves a chunk with one live copy, slice mirrors replaced when a
metadata drive fails or is removed, and re-adding a drive under a new id."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sealbox.storage import volume_repair
from sealbox.storage.chunk import CHUNK_SIZE
from sealbox.storage.engine import DriveSpec, StorageEngine
from sealbox.storage.filedev import FileBlockDevice
from sealbox.storage.slice_ops import Role
from sealbox.storage.volume_errors import VolumeDataUnavailable

KEY = b"drives-test-key-0123456789abcdef"
SECTORS = CHUNK_SIZE // 4096


def spec(root: Path, drive_id: int, node: int, role: Role) -> DriveSpec:
    sectors = 256 if role is Role.SLICE else 16384
    return DriveSpec(drive_id, node, role, FileBlockDevice(root / f"d{drive_id}", sectors,
                                                          create=True))


def three_nodes(root: Path) -> list[DriveSpec]:
    return [spec(root, 10 * n + r, n, role)
            for n in (1, 2, 3) for r, role in ((0, Role.SLICE), (1, Role.BLOCK), (2, Role.BLOCK))]


def fill(eng: StorageEngine, chunks: int) -> dict[int, bytes]:
    eng.create_volume(1, "v", chunks * CHUNK_SIZE)
    data = {}
    for c in range(chunks):
        data[c] = os.urandom(CHUNK_SIZE)
        eng.write_sectors(1, c, 0, data[c])
    eng.flush()
    return data


def live_copies(eng: StorageEngine) -> list[int]:
    return [len(eng.copies(1, c) or []) for c in sorted(eng.volume_record(1).chunks)]


def test_rereplicate_in_batches_reports_progress(tmp_path: Path) -> None:
    eng = StorageEngine(three_nodes(tmp_path), integrity_key=KEY, create=True)
    data = fill(eng, 120)
    victim = 11
    held = len(eng.chunks_on_drive(victim))
    assert held > volume_repair.BATCH_CHUNKS
    seen: list[tuple[int, int]] = []
    report = volume_repair.rereplicate(eng, victim, lambda d, t: seen.append((d, t)))
    assert report.copied == held and not report.lost
    assert seen[-1] == (held, held) and len(seen) > 1
    assert eng.chunks_on_drive(victim) == []
    assert volume_repair.under_protected(eng) == {}
    assert set(live_copies(eng)) == {2}
    for c, chunk in data.items():
        assert eng.read_sectors(1, c, 0, SECTORS) == chunk
    again = volume_repair.rereplicate(eng, victim)  # resumable: nothing left to do
    assert again.copied == 0


def test_move_off_keeps_two_live_copies_throughout(tmp_path: Path) -> None:
    eng = StorageEngine(three_nodes(tmp_path), integrity_key=KEY, create=True)
    data = fill(eng, 40)
    victim = 12
    low: list[int] = []

    def progress(done: int, total: int) -> None:
        low.append(min(live_copies(eng)))
        eng.write_sectors(1, 0, 0, data[0])  # writers go on meanwhile

    report = volume_repair.move_off(eng, victim, progress)
    assert not report.lost and low and min(low) == 2
    assert victim in volume_repair.failed_drives(eng)
    assert eng.chunks_on_drive(victim) == []
    assert set(live_copies(eng)) == {2}
    for c, chunk in data.items():
        assert eng.read_sectors(1, c, 0, SECTORS) == chunk


def test_failed_and_removed_slice_drives_are_replaced(tmp_path: Path) -> None:
    specs = three_nodes(tmp_path)
    eng = StorageEngine(specs, integrity_key=KEY, create=True)
    assert eng.metadata_mirrors == [10, 20]
    assert volume_repair.fail_slice_drive(eng, 10) == [30]
    assert sorted(eng.metadata_mirrors) == [20, 30]
    assert volume_repair.metadata_nodes(eng) == {2, 3}
    assert volume_repair.fail_slice_drive(eng, 10) == []  # safe to repeat
    fill(eng, 4)
    # Re-added under a new id (the cluster's next generation), it holds no mirror: two nodes do.
    volume_repair.add_drive(eng, spec(tmp_path, 10 + (1 << 16), 1, Role.SLICE))
    assert sorted(eng.metadata_mirrors) == [20, 30]
    assert volume_repair.remove_slice_drive(eng, 20) == [10 + (1 << 16)]
    assert sorted(eng.metadata_mirrors) == [30, 10 + (1 << 16)]
    eng.close()
    survivors = [s for s in specs if s.drive_id not in (10, 20)]
    reopened = StorageEngine([*survivors, spec_reopen(tmp_path, 10 + (1 << 16), 1)],
                             integrity_key=KEY)
    assert [v.volume_id for v in reopened.volumes()] == [1]
    assert len(reopened.volume_record(1).chunks) == 4


def spec_reopen(root: Path, drive_id: int, node: int) -> DriveSpec:
    return DriveSpec(drive_id, node, Role.SLICE,
                     FileBlockDevice(root / f"d{drive_id}", 256, create=False))


def test_the_last_metadata_copy_is_never_dropped(tmp_path: Path) -> None:
    specs = [spec(tmp_path, 10 * n + r, n, role)
             for n in (1, 2) for r, role in ((0, Role.SLICE), (1, Role.BLOCK))]
    eng = StorageEngine(specs, integrity_key=KEY, create=True)
    volume_repair.fail_slice_drive(eng, 10)
    assert eng.metadata_mirrors == [20]
    with pytest.raises(VolumeDataUnavailable):
        volume_repair.fail_slice_drive(eng, 20)
    assert eng.metadata_mirrors == [20]
