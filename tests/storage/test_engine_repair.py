"""Drive failures and additions on a running engine: re-replication, new drives."""

from __future__ import annotations

import os
from pathlib import Path

from sealbox.storage.chunk import CHUNK_SIZE
from sealbox.storage.engine import DriveSpec, StorageEngine
from sealbox.storage.filedev import FileBlockDevice
from sealbox.storage.slice_ops import Role
from tests.storage.devices import FlakyDevice

KEY = b"repair-test-key-0123456789abcdef"




def drive(root: Path, drive_id: int, node: int, role: Role, create: bool) -> DriveSpec:
    sectors = 256 if role is Role.SLICE else 8192
    dev = FlakyDevice(FileBlockDevice(root / f"d{drive_id}", sectors, create=create))
    return DriveSpec(drive_id, node, role, dev)


def cluster(root: Path, nodes: tuple[int, ...], create: bool) -> list[DriveSpec]:
    return [drive(root, 10 * n + r, n, role, create)
            for n in nodes for r, role in ((0, Role.SLICE), (1, Role.BLOCK))]


def flaky(spec: DriveSpec) -> FlakyDevice:
    assert isinstance(spec.device, FlakyDevice)
    return spec.device


def node_of(eng: StorageEngine, drive_id: int) -> int:
    return next(d.node_id for d in eng.drive_usage() if d.drive_id == drive_id)


def test_rereplication_restores_two_copies_on_two_nodes(tmp_path: Path) -> None:
    specs = cluster(tmp_path, (1, 2, 3), create=True)
    eng = StorageEngine(specs, integrity_key=KEY, create=True)
    eng.create_volume(1, "v", 8 * CHUNK_SIZE)
    vol = eng.open_volume(1)
    blob = os.urandom(8 * CHUNK_SIZE)
    vol.write(0, blob, fua=True)
    held = eng.chunks_on_drive(21)
    assert held
    flaky(specs[3]).broken = True  # drive 21, node 2
    report = eng.rereplicate(21)
    assert (report.copied, report.lost) == (len(held), [])
    assert eng.chunks_on_drive(21) == []
    for chunk, locs in eng.metadata.volumes[1].chunks.items():
        assert len({node_of(eng, d) for d, _ in locs}) == 2
        for d, _ in locs:  # each copy on its own holds the data
            assert eng.read_copy(1, chunk, d) == blob[chunk * CHUNK_SIZE:(chunk + 1) * CHUNK_SIZE]
    eng.close()
    assert StorageEngine(specs, integrity_key=KEY).open_volume(1).read(0, len(blob)) == blob


def test_rereplication_without_a_spare_node_reports_the_chunks(tmp_path: Path) -> None:
    specs = cluster(tmp_path, (1, 2), create=True)
    eng = StorageEngine(specs, integrity_key=KEY, create=True)
    eng.create_volume(1, "v", 2 * CHUNK_SIZE)
    eng.open_volume(1).write(0, b"q" * 5000, fua=True)
    report = eng.rereplicate(11)
    assert report.copied == 0
    assert report.lost == [(1, 0)]
    assert eng.open_volume(1).read(0, 5000) == b"q" * 5000  # still served by the survivor


def test_an_added_block_drive_takes_new_chunks(tmp_path: Path) -> None:
    specs = cluster(tmp_path, (1, 2), create=True)
    eng = StorageEngine(specs, integrity_key=KEY, create=True)
    eng.create_volume(1, "v", 4 * CHUNK_SIZE)
    vol = eng.open_volume(1)
    vol.write(0, b"a")
    new = drive(tmp_path, 31, 3, Role.BLOCK, create=True)
    eng.add_drive(new)
    vol.write(2 * CHUNK_SIZE, b"b")  # the emptiest drive is the new one
    assert 31 in (d for d, _ in eng.metadata.volumes[1].chunks[2])
    eng.close()
    again = StorageEngine([*specs, new], integrity_key=KEY).open_volume(1)
    assert again.read(2 * CHUNK_SIZE, 2) == b"b\0"


def test_an_added_slice_drive_replaces_a_failed_mirror(tmp_path: Path) -> None:
    specs = cluster(tmp_path, (1, 2), create=True)
    eng = StorageEngine(specs, integrity_key=KEY, create=True)
    assert eng.metadata_mirrors == [10, 20]
    flaky(specs[0]).broken = True
    eng.create_volume(1, "v", CHUNK_SIZE)  # mirror 10 fails: dropped and recorded
    assert eng.metadata_mirrors == [20]
    new = drive(tmp_path, 30, 3, Role.SLICE, create=True)
    eng.add_drive(new)
    assert eng.metadata_mirrors == [20, 30]
    eng.create_volume(2, "w", CHUNK_SIZE)
    eng.close()
    flaky(specs[2]).broken = True  # now lose drive 20 too: drive 30 has everything
    survivors = [s for s in specs if s.drive_id not in (10, 20)] + [new]
    reopened = StorageEngine(survivors, integrity_key=KEY)
    assert [v.volume_id for v in reopened.volumes()] == [1, 2]


def test_resync_batches_cover_every_chunk_and_never_wait_on_the_previous_batch(
        tmp_path: Path) -> None:
    # The copy pipeline copies a batch while the previous one still holds its range locks
    # (until its flush and commit): consecutive batches must not share a lock stripe.
    from itertools import pairwise

    from sealbox.storage.volume_repair import BATCH_CHUNKS, _batches
    eng = StorageEngine(cluster(tmp_path, (1, 2, 3), True), integrity_key=KEY, create=True)
    todo = [(1, c) for c in range(300)] + [(2, c) for c in range(40)]
    batches = list(_batches(eng, todo))
    assert sorted((vid, c) for vid, batch in batches for c in batch) == todo
    assert all(0 < len(batch) <= BATCH_CHUNKS for _, batch in batches)
    held = [{id(lock) for lock in eng.locks.chunks(vid, batch)._locks} for vid, batch in batches]
    assert all(a.isdisjoint(b) for a, b in pairwise(held))
