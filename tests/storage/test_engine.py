"""The engine's contract: volume lifecycle, and reads that are always right or clearly fail."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sealbox.errors import Exists, InvalidParameter, VolumeNotFound
from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.chunk import CHUNK_SIZE, BlockLayout
from sealbox.storage.engine import DriveSpec, StorageEngine
from sealbox.storage.filedev import FileBlockDevice
from sealbox.storage.slice_ops import Role
from sealbox.storage.volume_errors import (
    MetadataExists,
    MetadataUnavailable,
    NotEnoughSpace,
    VolumeDataUnavailable,
)
from tests.storage.devices import FlakyDevice

KEY = b"engine-test-key-0123456789abcdef"
BLOCK_SECTORS = 8192




class Cluster:
    """Three nodes of one slice and one block drive each, as files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.flaky: dict[int, FlakyDevice] = {}

    def specs(self, create: bool) -> list[DriveSpec]:
        out = []
        for n in (1, 2, 3):
            s = FileBlockDevice(self.root / f"slice{n}", 256, create=create)
            b = FlakyDevice(FileBlockDevice(self.root / f"block{n}", BLOCK_SECTORS,
                                            create=create))
            self.flaky[10 * n + 1] = b
            out += [DriveSpec(10 * n, n, Role.SLICE, s), DriveSpec(10 * n + 1, n, Role.BLOCK, b)]
        return out

    def engine(self, create: bool = False) -> StorageEngine:
        return StorageEngine(self.specs(create), integrity_key=KEY, create=create)

    def copy_place(self, eng: StorageEngine, vid: int, chunk: int, which: int,
                   ) -> tuple[int, Path, int]:
        """(drive id, file, byte offset of the chunk's data) of one copy."""
        drive_id, slot = eng.metadata.volumes[vid].chunks[chunk][which]
        layout = BlockLayout.for_device(BLOCK_SECTORS)
        return drive_id, self.root / f"block{drive_id // 10}", layout.data_sector(slot) * 4096

    def scribble(self, path: Path, offset: int, length: int) -> None:
        with path.open("r+b") as f:
            f.seek(offset)
            f.write(os.urandom(length))


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path)


def filled(cluster: Cluster) -> tuple[StorageEngine, bytes]:
    eng = cluster.engine(create=True)
    eng.create_volume(7, "data", 4 * CHUNK_SIZE)
    blob = os.urandom(2 * CHUNK_SIZE)
    eng.open_volume(7).write(CHUNK_SIZE, blob, fua=True)
    return eng, blob


def test_volume_lifecycle(cluster: Cluster) -> None:
    eng = cluster.engine(create=True)
    info = eng.create_volume(1, "a", 2 * CHUNK_SIZE)
    assert (info.volume_id, info.name, info.size, info.allocated_bytes) == (1, "a", 2 << 20, 0)
    with pytest.raises(Exists):
        eng.create_volume(1, "again", CHUNK_SIZE)
    with pytest.raises(InvalidParameter):
        eng.create_volume(2, "odd", 1000)
    eng.open_volume(1).write(0, b"x" * 5000)
    assert eng.resize_volume(1, 3 * CHUNK_SIZE).size == 3 * CHUNK_SIZE
    with pytest.raises(InvalidParameter, match="grow"):
        eng.resize_volume(1, CHUNK_SIZE)
    assert [v.name for v in eng.volumes()] == ["a"]
    eng.close()
    eng = cluster.engine()
    assert eng.volume_info(1).size == 3 * CHUNK_SIZE
    assert eng.open_volume(1).read(0, 5000) == b"x" * 5000
    assert eng.used_bytes() == 2 * CHUNK_SIZE
    eng.delete_volume(1)
    assert eng.used_bytes() == 0
    assert eng.volumes() == []
    with pytest.raises(VolumeNotFound):
        eng.open_volume(1)


def test_deleted_volume_handles_refuse_io_and_freed_space_reads_as_zeros(
        cluster: Cluster) -> None:
    eng, _ = filled(cluster)
    old = eng.open_volume(7)
    eng.delete_volume(7)
    with pytest.raises(VolumeNotFound):
        old.read(0, 1)
    eng.create_volume(8, "new", 4 * CHUNK_SIZE)
    new = eng.open_volume(8)
    new.write(0, b"y")  # reuses a slot the deleted volume held
    assert new.read(0, 4 * CHUNK_SIZE) == b"y" + bytes(4 * CHUNK_SIZE - 1)


@pytest.mark.parametrize("which", [0, 1])
def test_a_corrupt_copy_is_never_returned(cluster: Cluster, which: int) -> None:
    eng, blob = filled(cluster)
    _, path, off = cluster.copy_place(eng, 7, 1, which)
    cluster.scribble(path, off + 8192, 100)
    assert eng.open_volume(7).read(CHUNK_SIZE, len(blob)) == blob
    eng.close()
    assert cluster.engine().open_volume(7).read(CHUNK_SIZE, len(blob)) == blob


def test_a_corrupt_checksum_area_falls_back_to_the_other_copy(cluster: Cluster) -> None:
    eng, blob = filled(cluster)
    drive_id, slot = eng.metadata.volumes[7].chunks[2][0]
    path = cluster.root / f"block{drive_id // 10}"
    cluster.scribble(path, BlockLayout.for_device(BLOCK_SECTORS).csum_sector(slot) * 4096, 16384)
    assert eng.open_volume(7).read(CHUNK_SIZE, len(blob)) == blob


def test_both_copies_corrupt_is_a_clear_error_not_garbage(cluster: Cluster) -> None:
    eng, blob = filled(cluster)
    for which in (0, 1):
        _, path, off = cluster.copy_place(eng, 7, 1, which)
        cluster.scribble(path, off + 3 * SECTOR_SIZE, 10)
    vol = eng.open_volume(7)
    with pytest.raises(VolumeDataUnavailable, match="chunk 1 sector 3"):
        vol.read(CHUNK_SIZE, len(blob))
    assert vol.read(CHUNK_SIZE, 3 * SECTOR_SIZE) == blob[:3 * SECTOR_SIZE]  # the rest is fine
    with pytest.raises(VolumeDataUnavailable):  # nor can a partial write rebuild from it
        vol.write(CHUNK_SIZE + 3 * SECTOR_SIZE + 1, b"z")


@pytest.mark.parametrize("which", [0, 1])
def test_a_failing_device_is_read_around(cluster: Cluster, which: int) -> None:
    eng, blob = filled(cluster)
    drive_id, _, _ = cluster.copy_place(eng, 7, 1, which)
    cluster.flaky[drive_id].broken = True
    assert eng.open_volume(7).read(CHUNK_SIZE, len(blob)) == blob
    other, _, _ = cluster.copy_place(eng, 7, 1, 1 - which)
    cluster.flaky[other].broken = True
    with pytest.raises(VolumeDataUnavailable):
        eng.open_volume(7).read(CHUNK_SIZE, 10)


def test_a_drive_failing_a_write_is_failed_out_for_good(cluster: Cluster) -> None:
    eng, blob = filled(cluster)
    vol = eng.open_volume(7)
    drive_id, _, _ = cluster.copy_place(eng, 7, 1, 0)
    cluster.flaky[drive_id].broken = True
    vol.write(CHUNK_SIZE, b"new" * 1000, fua=True)  # acknowledged on the surviving copy
    assert {d.drive_id for d in eng.drive_usage() if d.failed} == {drive_id}
    eng.close()
    eng = cluster.engine()  # the drive is back and healthy, but its copy is stale
    want = b"new" * 1000 + blob[3000:]
    assert eng.open_volume(7).read(CHUNK_SIZE, len(blob)) == want
    eng.open_volume(7).write(0, b"later")  # new chunks avoid the failed drive
    assert all(drive_id not in (d for d, _ in locs)
               for locs in [eng.metadata.volumes[7].chunks[0]])


def test_a_drive_failing_at_allocation_is_failed_out_and_skipped(cluster: Cluster) -> None:
    eng = cluster.engine(create=True)
    eng.create_volume(1, "v", CHUNK_SIZE)
    cluster.flaky[11].broken = True  # all drives equally free: drive 11 is picked first
    eng.open_volume(1).write(0, b"still written")
    assert [d.drive_id for d in eng.drive_usage() if d.failed] == [11]
    assert {d for d, _ in eng.metadata.volumes[1].chunks[0]} == {21, 31}
    assert eng.open_volume(1).read(0, 13) == b"still written"


def test_chunks_on_drive_matches_the_maps(cluster: Cluster) -> None:
    eng, _ = filled(cluster)
    listed = {d.drive_id: eng.chunks_on_drive(d.drive_id) for d in eng.drive_usage()}
    mapped = len(eng.metadata.volumes[7].chunks)
    assert mapped >= 2
    assert sum(len(v) for v in listed.values()) == 2 * mapped
    for drive_id, chunks in listed.items():
        for vid, chunk in chunks:
            assert drive_id in (d for d, _ in eng.metadata.volumes[vid].chunks[chunk])


def test_a_corrupt_metadata_copy_is_replaced_from_the_other(cluster: Cluster) -> None:
    eng, blob = filled(cluster)
    first, second = eng.metadata_mirrors
    eng.close()
    cluster.scribble(cluster.root / f"slice{first // 10}", 0, 256 * 4096)
    eng = cluster.engine()
    assert eng.open_volume(7).read(CHUNK_SIZE, len(blob)) == blob
    eng.close()
    # the open rewrote the damaged copy: now the other one may be lost too
    cluster.scribble(cluster.root / f"slice{second // 10}", 0, 256 * 4096)
    assert cluster.engine().open_volume(7).read(CHUNK_SIZE, len(blob)) == blob


def test_the_copy_with_the_higher_sequence_wins(cluster: Cluster) -> None:
    eng, _ = filled(cluster)
    first, _ = eng.metadata_mirrors
    lagging = cluster.root / f"slice{first // 10}"
    shutil.copy(lagging, cluster.root / "old")
    eng.create_volume(9, "later", CHUNK_SIZE)
    eng.close()
    shutil.copy(cluster.root / "old", lagging)  # this copy missed the last commit
    assert [v.volume_id for v in cluster.engine().volumes()] == [7, 9]


def test_no_readable_metadata_is_refused_and_formatting_twice_too(cluster: Cluster) -> None:
    eng, _ = filled(cluster)
    eng.close()
    with pytest.raises(MetadataExists):
        cluster.engine(create=True)
    for n in (1, 2, 3):
        cluster.scribble(cluster.root / f"slice{n}", 0, 256 * 4096)
    with pytest.raises(MetadataUnavailable):
        cluster.engine()


def test_metadata_needs_slice_drives_on_two_nodes(tmp_path: Path) -> None:
    specs = [DriveSpec(1, 1, Role.SLICE, FileBlockDevice(tmp_path / "s1", 256, create=True)),
             DriveSpec(2, 1, Role.SLICE, FileBlockDevice(tmp_path / "s2", 256, create=True)),
             DriveSpec(3, 2, Role.BLOCK, FileBlockDevice(tmp_path / "b", 2048, create=True))]
    with pytest.raises(NotEnoughSpace, match="two different nodes"):
        StorageEngine(specs, integrity_key=KEY, create=True)


def test_capacity_reporting(cluster: Cluster) -> None:
    eng, _ = filled(cluster)
    usage = {d.drive_id: d for d in eng.drive_usage()}
    block = [d for d in usage.values() if d.role is Role.BLOCK]
    slots = BlockLayout.for_device(BLOCK_SECTORS).slots
    assert all(d.total_bytes == slots * CHUNK_SIZE for d in block)
    mapped = len(eng.metadata.volumes[7].chunks)
    assert sum(d.used_bytes for d in block) == eng.used_bytes() == 2 * mapped * CHUNK_SIZE
    assert eng.volume_info(7).allocated_bytes == mapped * CHUNK_SIZE
    eng.open_volume(7).trim(0, 4 * CHUNK_SIZE)
    assert eng.used_bytes() == 0
