"""The metadata witness (sealbox.storage.slice_store): the engine reports its metadata mirror
set whenever it changes, at the points that keep "every recorded mirror holds every
acknowledged change" true, and an open with a recorded set reads the metadata from those
drives only. On a real engine over drive files; a recorder stands in for the cluster's
record file (tests/drives/test_boot_missing.py covers the whole path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sealbox.storage import volume_repair
from sealbox.storage.chunk import CHUNK_SIZE
from sealbox.storage.engine import DriveSpec, MirrorWitness, StorageEngine
from sealbox.storage.filedev import FileBlockDevice
from sealbox.storage.slice_ops import Role
from sealbox.storage.volume_errors import MetadataNotCurrent, MetadataUnavailable
from tests.storage.devices import FlakyDevice

KEY = b"metadata-witness-test-key-012345"


class Recorder:
    """What the cluster's record file does, in memory, and every set it was told, in order."""

    def __init__(self, recorded: frozenset[int] | None = None) -> None:
        self.recorded = recorded
        self.history: list[list[int]] = []
        self.fail = False

    def record(self, ids: list[int]) -> None:
        if self.fail:
            raise OSError("disk full")
        self.history.append(sorted(ids))
        self.recorded = frozenset(ids)

    def witness(self) -> MirrorWitness:
        return MirrorWitness(self.recorded, self.record)


def _specs(root: Path, create: bool, missing: set[int] = frozenset()) -> list[DriveSpec]:
    """Three nodes of one slice drive (id 10n, on a FlakyDevice) and one block drive (10n+1),
    minus ``missing``."""
    out = []
    for n in (1, 2, 3):
        if 10 * n not in missing:
            out.append(DriveSpec(10 * n, n, Role.SLICE, FlakyDevice(
                FileBlockDevice(root / f"slice{n}", 256, create=create))))
        if 10 * n + 1 not in missing:
            out.append(DriveSpec(10 * n + 1, n, Role.BLOCK, FileBlockDevice(
                root / f"block{n}", 8192, create=create)))
    return out


def _slice(eng_specs: list[DriveSpec], drive_id: int) -> FlakyDevice:
    dev = next(s.device for s in eng_specs if s.drive_id == drive_id)
    assert isinstance(dev, FlakyDevice)
    return dev


def test_format_records_the_mirrors_and_open_reads_only_from_them(tmp_path: Path) -> None:
    rec = Recorder()
    eng = StorageEngine(_specs(tmp_path, True), integrity_key=KEY, create=True,
                        witness=rec.witness())
    assert rec.history == [[10, 20]] and eng.metadata_mirrors == [10, 20]
    eng.create_volume(1, "v", CHUNK_SIZE)
    eng.close()
    # Slice drive 30 was never a mirror: without it the metadata is current all the same.
    eng = StorageEngine(_specs(tmp_path, False, {30}), integrity_key=KEY,
                        witness=rec.witness())
    assert eng.metadata_proven and 1 in eng.metadata.volumes
    eng.close()


def test_a_dropped_mirror_is_forgotten_before_the_commit_it_misses_returns(
        tmp_path: Path) -> None:
    rec = Recorder()
    specs = _specs(tmp_path, True)
    eng = StorageEngine(specs, integrity_key=KEY, create=True, witness=rec.witness())
    eng.create_volume(1, "v", CHUNK_SIZE)
    _slice(specs, 10).broken = True
    eng.create_volume(2, "w", CHUNK_SIZE)  # 10 misses this record: dropped, and forgotten
    assert rec.history == [[10, 20], [20]]
    volume_repair.fail_slice_drive(eng, 10)  # the cluster's failure path: a new mirror
    assert eng.metadata_mirrors == [20, 30] and rec.history[-1] == [20, 30]
    eng.create_volume(3, "x", CHUNK_SIZE)
    eng.close()

    # Slice drive 10 comes back holding an old copy (no volume 2 or 3). The mirrors that
    # hold everything are missing: refused, although a copy was found.
    _slice(specs, 10).broken = False
    with pytest.raises(MetadataNotCurrent) as info:
        StorageEngine(_specs(tmp_path, False, {20, 30}), integrity_key=KEY,
                      witness=rec.witness())
    assert info.value.drive_ids == [20, 30]
    # Without the record, the old copy would have been served: what the witness is for.
    stale = StorageEngine(_specs(tmp_path, False, {20, 30}), integrity_key=KEY)
    assert set(stale.metadata.volumes) == {1}
    stale.close()
    # One recorded mirror is enough, whatever else is missing.
    eng = StorageEngine(_specs(tmp_path, False, {10, 20}), integrity_key=KEY,
                        witness=rec.witness())
    assert set(eng.metadata.volumes) == {1, 2, 3}
    eng.close()


def test_a_removed_mirror_is_forgotten_before_it_misses_anything(tmp_path: Path) -> None:
    rec = Recorder()
    eng = StorageEngine(_specs(tmp_path, True), integrity_key=KEY, create=True,
                        witness=rec.witness())
    volume_repair.remove_slice_drive(eng, 10)  # RemoveDrives: a replacement first
    assert rec.history == [[10, 20], [10, 20, 30], [20, 30]]
    eng.close()


def test_when_the_set_cannot_be_recorded_no_change_is_acknowledged(tmp_path: Path) -> None:
    rec = Recorder()
    specs = _specs(tmp_path, True)
    eng = StorageEngine(specs, integrity_key=KEY, create=True, witness=rec.witness())
    eng.create_volume(1, "v", CHUNK_SIZE)
    rec.fail = True
    _slice(specs, 10).broken = True
    with pytest.raises(MetadataUnavailable):
        eng.create_volume(2, "w", CHUNK_SIZE)
    assert 2 not in eng.metadata.volumes  # not applied: it was not acknowledged
    rec.fail = False
    with pytest.raises(MetadataUnavailable, match="could not be recorded"):
        eng.create_volume(3, "x", CHUNK_SIZE)  # and nothing else changes until a restart
    eng.close()
    # The record still names 10 and 20: 20 holds everything acknowledged (and the record of
    # volume 2 that was never acknowledged, which may be kept or lost).
    eng = StorageEngine(_specs(tmp_path, False, {10}), integrity_key=KEY,
                        witness=rec.witness())
    assert 1 in eng.metadata.volumes and 3 not in eng.metadata.volumes
    eng.close()


def test_an_unrecorded_cluster_opens_as_before_and_is_recorded(tmp_path: Path) -> None:
    eng = StorageEngine(_specs(tmp_path, True), integrity_key=KEY, create=True)
    eng.create_volume(1, "v", CHUNK_SIZE)
    eng.close()
    rec = Recorder()
    eng = StorageEngine(_specs(tmp_path, False), integrity_key=KEY, witness=rec.witness())
    assert not eng.metadata_proven and rec.history == [[10, 20]]
    eng.close()
    eng = StorageEngine(_specs(tmp_path, False, {30}), integrity_key=KEY,
                        witness=rec.witness())
    assert eng.metadata_proven and 1 in eng.metadata.volumes
    eng.close()


def test_slice_drives_that_did_not_open_are_failed_durably(tmp_path: Path) -> None:
    rec = Recorder()
    eng = StorageEngine(_specs(tmp_path, True), integrity_key=KEY, create=True,
                        witness=rec.witness())
    eng.create_volume(1, "v", CHUNK_SIZE)
    blob = os.urandom(CHUNK_SIZE)
    eng.open_volume(1).write(0, blob, fua=True)
    eng.close()
    eng = StorageEngine(_specs(tmp_path, False, {10}), integrity_key=KEY,
                        witness=rec.witness())
    assert eng.metadata_mirrors == [20, 30] and rec.history[-1] == [20, 30]
    eng.fail_drive(10)  # as boot_losses.fail_in_engine does
    assert 10 in eng.metadata.failed
    eng.close()
    eng = StorageEngine(_specs(tmp_path, False), integrity_key=KEY, witness=rec.witness())
    assert 10 in eng.metadata.failed and eng.metadata_mirrors == [20, 30]
    assert eng.open_volume(1).read(0, CHUNK_SIZE) == blob
    eng.close()


def test_after_an_update_no_mirror_took_nothing_changes_until_a_restart(
        tmp_path: Path) -> None:
    """The record may be on the drive although its flush failed: a later commit would reuse
    its sequence number and be lost behind it at the next open."""
    rec = Recorder()
    specs = _specs(tmp_path, True)
    eng = StorageEngine(specs, integrity_key=KEY, create=True, witness=rec.witness())
    _slice(specs, 20).broken = True
    eng.create_volume(1, "v", CHUNK_SIZE)  # 20 dropped: 10 alone holds the metadata
    assert rec.history[-1] == [10]
    _slice(specs, 10).failing_flushes = 1
    with pytest.raises(MetadataUnavailable):
        eng.create_volume(2, "w", CHUNK_SIZE)
    with pytest.raises(MetadataUnavailable, match="a metadata update failed"):
        eng.create_volume(3, "x", CHUNK_SIZE)  # refused, not acknowledged then lost
    eng.close()
    eng = StorageEngine(_specs(tmp_path, False, {20}), integrity_key=KEY,
                        witness=rec.witness())
    assert 1 in eng.metadata.volumes and 3 not in eng.metadata.volumes
    eng.create_volume(4, "y", CHUNK_SIZE)  # a restart reads what is there and goes on
    eng.close()
    eng = StorageEngine(_specs(tmp_path, False, {20}), integrity_key=KEY,
                        witness=rec.witness())
    assert {1, 4} <= set(eng.metadata.volumes)
    eng.close()


def test_a_record_left_from_another_cluster_does_not_stop_formatting(tmp_path: Path) -> None:
    """Opening refuses (the recorded drives hold nothing), but blank drives may be formatted:
    formatting refuses drives that hold any metadata, so nothing can be lost."""
    rec = Recorder(frozenset({10, 20}))
    with pytest.raises(MetadataNotCurrent):
        StorageEngine(_specs(tmp_path, True), integrity_key=KEY, witness=rec.witness())
    StorageEngine(_specs(tmp_path, False), integrity_key=KEY, create=True,
                  witness=rec.witness()).close()
    assert rec.history == [[10, 20]]
