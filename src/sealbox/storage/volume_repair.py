"""Drive changes of a running engine: re-replication after a failure, failed metadata
mirrors, new drives, and the protection report the cluster's faults are built from.

These functions work on the engine's internals (its pool, chunk I/O and metadata store) and
follow its lock order: range locks, then the store's lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from itertools import groupby
from typing import TYPE_CHECKING

from sealbox.errors import Exists
from sealbox.storage.chunk import SECTORS_PER_CHUNK
from sealbox.storage.placement import SlotAllocator
from sealbox.storage.slice_ops import AddDrive, Loc, MapChunk, Role
from sealbox.storage.volume_errors import (
    MetadataUnavailable,
    NotEnoughSpace,
    VolumeDataUnavailable,
)
from sealbox.storage.volume_pool import clear_checksum_area

if TYPE_CHECKING:
    from sealbox.storage.chunk_io import Copy
    from sealbox.storage.engine import StorageEngine
    from sealbox.storage.volume_types import DriveSpec

# Chunks copied under one set of range locks and made durable by one flush per target drive
# and one metadata commit: per-chunk flushes and commits would cost three fsyncs per MiB.
BATCH_CHUNKS = 32

# Chunks of a batch are copied by this many threads: reads, hashing and drive I/O release the
# GIL, so a second core helps (measured ~1.5x on two cores; the sector cipher keeps the GIL).
COPY_THREADS = 2

Progress = Callable[[int, int], None]
"""Called as ``progress(chunks_done, chunks_total)`` after each batch."""


@dataclass
class RepairReport:
    copied: int = 0
    lost: list[tuple[int, int]] = field(default_factory=list)
    """(volume, chunk) pairs with no readable surviving copy, or no room for a new one."""


def rereplicate(engine: StorageEngine, drive_id: int,
                progress: Progress | None = None) -> RepairReport:
    """Fail ``drive_id`` out if it is still in service, then copy every chunk it held from its
    surviving (verified) copy to a new slot on a node that holds no copy of that chunk.

    A batch of chunks is remapped only after their new copies are written and flushed, so a
    crash leaves the old maps (the chunks still readable from their survivors) and running
    this again resumes with the chunks not yet moved.
    """
    engine.fail_drive(drive_id)
    return _move_all(engine, drive_id, progress)


def move_off(engine: StorageEngine, drive_id: int,
             progress: Progress | None = None) -> RepairReport:
    """RemoveDrives: copy every chunk with a copy on block drive ``drive_id`` to another drive
    *while the drive still serves* (so no chunk ever has a single live copy), then fail it
    out. New chunks are no longer placed on it meanwhile. If some chunk could not be moved
    (``report.lost``, e.g. no space), the drive stays in service."""
    pool = engine._pool
    with engine._store.lock:
        # The pool has no "drain" switch: an allocator with no slots keeps new copies off the
        # drive while its existing copies stay readable and writable.
        saved = pool._alloc.get(drive_id)
        if saved is not None:
            pool._alloc[drive_id] = SlotAllocator(0)
    try:
        report = _move_all(engine, drive_id, progress)
    except BaseException:
        _undrain(engine, drive_id, saved)  # the drive stays in service: let it take chunks
        raise
    if report.lost:
        _undrain(engine, drive_id, saved)
        return report
    engine.fail_drive(drive_id)
    return report


def _undrain(engine: StorageEngine, drive_id: int, saved: SlotAllocator | None) -> None:
    with engine._store.lock:
        if saved is not None and drive_id in engine._pool:
            engine._pool._alloc[drive_id] = saved


def _move_all(engine: StorageEngine, drive_id: int, progress: Progress | None) -> RepairReport:
    """Copy the chunks naming ``drive_id`` in batches, as a two-stage pipeline: while one
    batch is made durable (a flush per target drive, one metadata commit) in a helper thread,
    the next batch is copied. Each batch holds its chunks' range locks until its commit."""
    report = RepairReport()
    with engine._store.lock:  # the maps must not change while they are walked
        todo = engine.chunks_on_drive(drive_id)
    done = 0

    def commit(staged: _Staged) -> None:
        # in the helper thread, one batch at a time: the progress record (a durable write of
        # its own) never delays the copying
        nonlocal done
        done += _commit_batch(engine, staged, report)
        if progress is not None:
            progress(done, len(todo))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="resync") as helper, \
            ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="resync-copy") as copiers:
        pending: Future[None] | None = None
        try:
            for vid, batch in _batches(engine, todo):
                staged = _copy_batch(engine, vid, batch, drive_id, report, copiers)
                finished, pending = pending, None
                try:
                    if finished is not None:
                        finished.result()
                except BaseException:  # its commit failed: this batch is not mapped either
                    _abandon(engine, staged)
                    raise
                pending = helper.submit(commit, staged)
            if pending is not None:
                finished, pending = pending, None
                finished.result()
        finally:
            if pending is not None:
                pending.exception()  # let it finish (it releases its locks) before leaving
    return report


def _batches(engine: StorageEngine, todo: Sequence[tuple[int, int]],
             ) -> Iterator[tuple[int, list[int]]]:
    """``todo`` cut into batches of up to :data:`BATCH_CHUNKS` chunks of one volume, in which
    no batch shares a range-lock stripe with the one before it.

    The pipeline copies a batch while the previous one, still holding its locks, is made
    durable: the locks are striped, and a batch that needed a stripe of the previous one
    would wait for its commit, serializing the copy with the flush (with 32 chunks of four
    groups each, almost every pair of batches shares some stripe). So a chunk whose stripes
    clash with the previous batch waits for a later batch; the order of the copies does not
    matter (a crash leaves some chunks still naming the drive, which a rerun copies)."""
    def stripes(vid: int, chunk: int) -> frozenset[int]:
        # the lock objects that locks.chunks() would take (no lock is acquired here)
        return frozenset(map(id, engine.locks.chunks(vid, [chunk])._locks))

    prev: frozenset[int] = frozenset()
    for vid, group in groupby(todo, key=lambda key: key[0]):
        left = [(c, stripes(vid, c)) for _, c in group]
        while left:
            batch: list[int] = []
            taken: set[int] = set()
            rest: list[tuple[int, frozenset[int]]] = []
            for i, (chunk, own) in enumerate(left):
                if len(batch) == BATCH_CHUNKS:
                    rest.extend(left[i:])
                    break
                if prev.isdisjoint(own):
                    batch.append(chunk)
                    taken |= own
                else:
                    rest.append((chunk, own))
            if not batch:  # everything left clashes with the previous batch: wait for it
                batch = [c for c, _ in rest[:BATCH_CHUNKS]]
                taken = set().union(*(own for _, own in rest[:BATCH_CHUNKS]))
                rest = rest[BATCH_CHUNKS:]
            left = rest
            prev = frozenset(taken)
            yield vid, batch


@dataclass
class _Staged:
    """A batch whose new copies are written but not yet durable or mapped."""

    held: AbstractContextManager[None]
    chunks: int
    ops: list[MapChunk]
    targets: list[Copy]


def _copy_batch(engine: StorageEngine, vid: int, chunks: Sequence[int], drive_id: int,
                report: RepairReport, copiers: ThreadPoolExecutor) -> _Staged:
    held = engine.locks.chunks(vid, chunks)
    held.__enter__()
    staged = _Staged(held, len(chunks), [], [])
    def copy(chunk: int) -> None:
        try:
            op, target = _copy_chunk(engine, vid, chunk, drive_id)
        except (VolumeDataUnavailable, NotEnoughSpace):
            report.lost.append((vid, chunk))
            return
        if op is not None and target is not None:
            staged.ops.append(op)
            staged.targets.append(target)

    futures = [copiers.submit(copy, c) for c in chunks]
    try:
        for done in futures:
            done.result()
    except BaseException:
        for f in futures:  # none may still be writing when its slot is given back
            f.cancel()
        wait(futures)
        _abandon(engine, staged)
        raise
    return staged


def _commit_batch(engine: StorageEngine, staged: _Staged, report: RepairReport) -> int:
    """Flush the batch's targets, map the new copies, release the locks; returns its size."""
    try:
        for dev in {id(t.dev): t.dev for t in staged.targets}.values():
            dev.flush()
        engine._store.commit(staged.ops)
    except BaseException:
        _abandon(engine, staged)
        raise
    report.copied += len(staged.ops)
    staged.held.__exit__(None, None, None)
    return staged.chunks


def _abandon(engine: StorageEngine, staged: _Staged) -> None:
    with engine._store.lock:
        engine._pool.give_back([(t.drive_id, t.slot) for t in staged.targets])
    staged.held.__exit__(None, None, None)


def _copy_chunk(engine: StorageEngine, vid: int, chunk: int,
                drive_id: int) -> tuple[MapChunk | None, Copy | None]:
    """Write a new copy of one chunk (caller holds its range lock); None if nothing to do."""
    pool = engine._pool
    locs = engine.volume_record(vid).chunks.get(chunk)
    if locs is None or all(d != drive_id for d, _ in locs):
        return None, None  # freed or already moved meanwhile
    keep = tuple(loc for loc in locs if loc[0] != drive_id and loc[0] in pool)
    survivors = engine.copies(vid, chunk) or []  # live ones: the drive itself while removing
    if not survivors:
        raise VolumeDataUnavailable(f"volume {vid}: chunk {chunk} has no surviving copy")
    # Verification hashes every sector read; those tokens (bound to volume, chunk and sector,
    # not to the drive) are the new copy's entries, so the chunk is hashed once, not twice.
    data, tokens = engine._io.read_with_tokens(vid, chunk, survivors, 0, SECTORS_PER_CHUNK)
    new = _take_one(engine, {n for d, _ in keep if (n := pool.node_of(d)) is not None})
    target = pool.copy(*new)
    assert target is not None
    try:
        engine._io.fill(vid, chunk, target, data, tokens)
    except BaseException:
        with engine._store.lock:
            pool.give_back([new])
        raise
    return MapChunk(vid, chunk, (*keep, new)), target


def _take_one(engine: StorageEngine, avoid_nodes: set[int]) -> Loc:
    with engine._store.lock:
        return engine._pool.take_one(avoid_nodes)


def failed_drives(engine: StorageEngine) -> set[int]:
    """The ids the metadata records as failed (a consistent copy)."""
    with engine._store.lock:
        return set(engine._store.state.failed)


def under_protected(engine: StorageEngine) -> dict[int, int]:
    """For every drive that holds a copy of some chunk but is not in service (failed,
    removed or absent): how many chunks still name it. Empty when every chunk has all its
    copies on live drives."""
    pool = engine._pool
    out: dict[int, int] = {}
    with engine._store.lock:
        for vol in engine._store.state.volumes.values():
            for locs in vol.chunks.values():
                for d, _ in locs:
                    if d not in pool:
                        out[d] = out.get(d, 0) + 1
    return out


def copies_on(engine: StorageEngine, drive_ids: set[int]) -> list[tuple[int, ...]]:
    """For every chunk with a copy on one of ``drive_ids``: the drives of all its copies
    (a consistent copy of the maps, taken under the metadata lock)."""
    with engine._store.lock:
        return [tuple(d for d, _ in locs) for vol in engine._store.state.volumes.values()
                for locs in vol.chunks.values() if any(d in drive_ids for d, _ in locs)]


def chunks_without_live_copy(engine: StorageEngine, on: set[int]) -> int:
    """How many chunks with a copy on one of the drives ``on`` have no copy on a drive in
    service (chunks lost earlier, on other drives, are not counted)."""
    pool = engine._pool
    with engine._store.lock:
        return sum(1 for vol in engine._store.state.volumes.values()
                   for locs in vol.chunks.values()
                   if any(d in on for d, _ in locs) and not any(d in pool for d, _ in locs))


def fail_slice_drive(engine: StorageEngine, drive_id: int) -> list[int]:
    """Stop keeping metadata on slice drive ``drive_id`` (it failed), durably (a
    ``FailDrive`` record on the surviving mirrors), then copy the metadata from a surviving
    mirror onto replacement slice drives so that two nodes hold it again where the live slice
    drives allow. Returns the new mirrors' ids. Safe to repeat."""
    store = engine._store
    with store.lock:
        if drive_id not in store.state.failed:
            _drop_mirror(engine, drive_id)
        return _replenish(engine, drive_id)


def remove_slice_drive(engine: StorageEngine, drive_id: int) -> list[int]:
    """RemoveDrives on a slice drive: first copy the metadata onto a replacement (if the drive
    is a mirror), then stop using it, so the metadata never has fewer copies than before."""
    store = engine._store
    with store.lock:
        if drive_id in store.state.failed:
            return []
        before = len(_mirror_nodes(engine))
        added = _replenish(engine, drive_id)
        after = {engine._specs[m].node_id for m in store.mirror_ids
                 if m in engine._specs and m != drive_id}
        if len(after) < min(2, before):
            # No slice drive of another node can take its copy: dropping it would leave the
            # metadata on fewer nodes than it is on now.
            raise NotEnoughSpace(
                f"slice drive {drive_id} cannot be removed: no slice drive of another node "
                "can take its copy of the volume metadata")
        _drop_mirror(engine, drive_id)
        return added


def _drop_mirror(engine: StorageEngine, drive_id: int) -> None:
    try:
        engine._store.drop_mirror(drive_id)
    except MetadataUnavailable as exc:
        raise VolumeDataUnavailable(exc.message) from exc


def _replenish(engine: StorageEngine, leaving: int) -> list[int]:
    store = engine._store
    added = []
    for candidate in engine._mirror_ids(store.state.failed | {leaving}):
        nodes = {engine._specs[m].node_id for m in store.mirror_ids
                 if m in engine._specs and m != leaving}
        node = engine._specs[candidate].node_id
        if candidate not in store.mirror_ids and len(nodes) < 2 and node not in nodes:
            store.add_mirror(candidate, engine._specs[candidate].device)
            added.append(candidate)
    return added


def _mirror_nodes(engine: StorageEngine) -> set[int]:
    return {engine._specs[m].node_id for m in engine._store.mirror_ids if m in engine._specs}


def metadata_nodes(engine: StorageEngine) -> set[int]:
    """The nodes whose slice drives hold a live copy of the volume metadata."""
    with engine._store.lock:
        return _mirror_nodes(engine)


def add_drive(engine: StorageEngine, spec: DriveSpec) -> None:
    """Take a drive with a new id into service. A block drive's checksum area is emptied
    (durably) before it is recorded, so its slots read as zeros; a slice drive becomes a
    metadata mirror if fewer than two nodes hold one (its copy is written from the current
    state, the surviving copy's, before this returns).

    A drive that was in service before (re-added after a failure, a removal or an erase)
    comes back under a new id: the metadata never forgets that its old id failed, so no old
    copy on it is ever read again."""
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
        mirror_nodes = _mirror_nodes(engine)
        if len(mirror_nodes) < 2 and spec.node_id not in mirror_nodes:
            store.add_mirror(spec.drive_id, spec.device)
