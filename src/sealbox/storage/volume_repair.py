"""Drive changes of a running engine: re-replication after a failure, and new drives.

These functions work on the engine's internals (its pool, chunk I/O and metadata store) and
follow its lock order: range locks, then the store's lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sealbox.errors import Exists
from sealbox.storage.chunk import SECTORS_PER_CHUNK
from sealbox.storage.slice_ops import AddDrive, Loc, MapChunk, Role
from sealbox.storage.volume_errors import NotEnoughSpace, VolumeDataUnavailable
from sealbox.storage.volume_pool import DriveWriteFailed, clear_checksum_area

if TYPE_CHECKING:
    from sealbox.storage.engine import StorageEngine
    from sealbox.storage.volume_types import DriveSpec


@dataclass
class RepairReport:
    copied: int = 0
    lost: list[tuple[int, int]] = field(default_factory=list)
    """(volume, chunk) pairs with no readable surviving copy, or no room for a new one."""


def rereplicate(engine: StorageEngine, drive_id: int) -> RepairReport:
    """Fail ``drive_id`` out if it is still in service, then copy every chunk it held from its
    surviving (verified) copy to a new slot on a node that holds no copy of that chunk.

    A chunk is remapped only after its new copy is written and flushed, so a crash leaves the
    old map (the chunk still readable from its survivor) and running this again resumes.
    """
    engine.fail_drive(drive_id)
    report = RepairReport()
    for vid, chunk in engine.chunks_on_drive(drive_id):
        try:
            if _rereplicate_chunk(engine, vid, chunk, drive_id):
                report.copied += 1
        except (VolumeDataUnavailable, NotEnoughSpace):
            report.lost.append((vid, chunk))
    return report


def _rereplicate_chunk(engine: StorageEngine, vid: int, chunk: int, drive_id: int) -> bool:
    pool, store = engine._pool, engine._store  # the engine's own helper module
    with engine.locks.chunks(vid, [chunk]):
        locs = engine.volume_record(vid).chunks.get(chunk)
        if locs is None or all(d != drive_id for d, _ in locs):
            return False  # freed or already moved meanwhile
        keep = tuple(loc for loc in locs if loc[0] != drive_id and loc[0] in pool)
        survivors = [c for c in engine.copies(vid, chunk) or [] if c.drive_id != drive_id]
        if not survivors:
            raise VolumeDataUnavailable(f"volume {vid}: chunk {chunk} has no surviving copy")
        data = engine._io.read(vid, chunk, survivors, 0, SECTORS_PER_CHUNK)
        new = _take_one(engine, {n for d, _ in keep if (n := pool.node_of(d)) is not None})
        try:
            target = pool.copy(*new)
            assert target is not None
            engine._io.fill(vid, chunk, target, data)
            target.dev.flush()
            store.commit([MapChunk(vid, chunk, (*keep, new))])
        except BaseException:
            with store.lock:
                pool.give_back([new])
            raise
    return True


def _take_one(engine: StorageEngine, avoid_nodes: set[int]) -> Loc:
    with engine._store.lock:
        while True:  # each failure takes a drive out, so this ends
            try:
                return engine._pool.take_one(avoid_nodes)
            except DriveWriteFailed as exc:
                engine.fail_drive(exc.drive_id)


def add_drive(engine: StorageEngine, spec: DriveSpec) -> None:
    """Take a drive with a new id into service. A block drive's checksum area is emptied
    (durably) before it is recorded, so its slots read as zeros; a slice drive becomes a
    metadata mirror if fewer than two nodes hold one."""
    store = engine._store
    with store.lock:
        if spec.drive_id in store.state.drives:
            raise Exists(f"drive {spec.drive_id} is already known to the volume engine")
        if spec.role is Role.BLOCK:
            clear_checksum_area(spec.device)
        store.commit([AddDrive(spec.drive_id, spec.node_id, spec.role,
                               spec.device.sector_count)])
        engine._specs[spec.drive_id] = spec
        if spec.role is Role.BLOCK:
            engine._pool.add(spec.drive_id, spec.node_id, spec.device, ())
            return
        mirror_nodes = {engine._specs[m].node_id for m in store.mirror_ids}
        if len(mirror_nodes) < 2 and spec.node_id not in mirror_nodes:
            store.add_mirror(spec.drive_id, spec.device)
