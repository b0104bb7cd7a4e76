"""The volume engine: thin-provisioned, double-helix volumes over block and slice drives.

The cluster layer builds one :class:`StorageEngine` from its drives (each a
:class:`DriveSpec`: id, node, role, device) and asks it for volumes. Chunk data lives on block
drives, two copies on two nodes; the chunk maps live on two slice drives of two nodes
(:mod:`sealbox.storage.slice_store`). See docs/volumes.md for formats and guarantees.

Lock order: range locks (:mod:`volume_locks`), then the metadata store's lock; never the other
way round.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sealbox.errors import Exists, InvalidParameter, VolumeNotFound
from sealbox.storage import volume_repair
from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.chunk import CHUNK_SIZE, CSUM_SECTORS, BlockLayout, Sealer
from sealbox.storage.chunk_io import ChunkIO, Copy
from sealbox.storage.placement import pick_mirrors
from sealbox.storage.slice_ops import (
    AddDrive,
    CreateVolume,
    DeleteVolume,
    FailDrive,
    Loc,
    MapChunk,
    MetaState,
    ResizeVolume,
    Role,
    UnmapChunk,
    VolumeRec,
)
from sealbox.storage.slice_store import SliceStore, Witness
from sealbox.storage.volume import Volume
from sealbox.storage.volume_epochs import ChunkKey, WriteEpochs
from sealbox.storage.volume_errors import (
    MetadataExists,
    NotEnoughSpace,
    VolumeDataUnavailable,
    VolumeRangeError,
)
from sealbox.storage.volume_locks import RangeLocks
from sealbox.storage.volume_mapahead import MapAhead
from sealbox.storage.volume_pool import BlockPool, DriveWriteFailed, clear_checksum_area
from sealbox.storage.volume_repair import RepairReport
from sealbox.storage.volume_types import DriveSpec, DriveUsage, MirrorWitness, VolumeInfo

__all__ = ["DriveSpec", "DriveUsage", "MirrorWitness", "StorageEngine", "VolumeInfo"]

_UNMAP_BATCH = 64
_PREALLOC = 64
_TRACKED_CHUNKS_MAX = 8192  # 16 MiB of write tracking, or 8 GiB written without a flush


class StorageEngine:
    """Owns the volumes of one cluster. Thread-safe.

    ``create=True`` formats the drives (refusing, with :class:`MetadataExists`, drives that
    already hold metadata); ``create=False`` opens them (raising :class:`MetadataUnavailable`
    if no slice drive holds readable metadata). ``integrity_key`` keys the sector checksums
    and metadata digests; it must be the same at every open.

    ``witness`` (see :mod:`sealbox.storage.slice_store`) keeps the metadata mirror set outside
    the slice drives. With ``witness.recorded`` known, the metadata is read only from those
    drives (:class:`MetadataNotCurrent` if none of them loads) and :attr:`metadata_proven` is
    True: slice drives that did not open may then be failed. Without it (a cluster formatted
    before mirrors were recorded) the newest copy of every slice drive given is used, which
    is current only if every slice drive is there; the caller checks that.
    """

    def __init__(self, drives: Sequence[DriveSpec], *, integrity_key: bytes | None = None,
                 create: bool = False, witness: MirrorWitness | None = None) -> None:
        self._specs = {d.drive_id: d for d in drives}
        self._io = ChunkIO(Sealer(integrity_key))
        self._locks = RangeLocks()
        self._epochs = WriteEpochs()
        slices = [(d.drive_id, d.device) for d in drives if d.role is Role.SLICE]
        loaded = SliceStore.load_all(slices, integrity_key)
        tell = witness.record if witness is not None else None
        self.metadata_proven = create
        if create:
            if any(v is not None for _, v in loaded.values()):
                raise MetadataExists("the slice drives already hold volume metadata")
            self._store = self._format(drives, integrity_key, tell)
        else:
            if witness is not None and witness.recorded is not None:
                best = SliceStore.current_of(loaded, witness.recorded)
                self.metadata_proven = True
            else:
                best = SliceStore.best_of(loaded)
            self._store = SliceStore.open(
                loaded, best, self._mirror_ids(best.state.failed), integrity_key, tell)
        self._pool = BlockPool()
        self._ahead = MapAhead(self._map_ahead)
        self._rebuild_block_state()
        self.flush()  # everything already on disk now counts as flushed (see WriteEpochs)

    # --- construction -----------------------------------------------------------------------
    def _mirror_ids(self, failed: Iterable[int] = ()) -> list[int]:
        bad = set(failed)
        return pick_mirrors([(d.drive_id, d.node_id) for d in self._specs.values()
                             if d.role is Role.SLICE and d.drive_id not in bad])

    def _format(self, drives: Sequence[DriveSpec], key: bytes | None,
                witness: Witness | None) -> SliceStore:
        mirrors = self._mirror_ids()
        if len(mirrors) < 2:
            raise NotEnoughSpace("volume metadata needs slice drives on two different nodes")
        for d in drives:
            if d.role is Role.BLOCK:
                clear_checksum_area(d.device)
        ops = [AddDrive(d.drive_id, d.node_id, d.role, d.device.sector_count) for d in drives]
        return SliceStore.format([(m, self._specs[m].device) for m in mirrors], key, ops,
                                 witness)

    def _rebuild_block_state(self) -> None:
        state = self._store.state
        used: dict[int, list[int]] = {}
        for vol in state.volumes.values():
            for locs in vol.chunks.values():
                for drive_id, slot in locs:
                    used.setdefault(drive_id, []).append(slot)
        for drive_id, rec in state.drives.items():
            spec = self._specs.get(drive_id)
            if rec.role is not Role.BLOCK or spec is None or drive_id in state.failed:
                continue  # absent or failed drives serve nothing; their copies are skipped
            if spec.device.sector_count < rec.sector_count:
                continue  # truncated: its slots are not all there; serve from the other copies
            self._pool.add(drive_id, rec.node_id, spec.device, used.get(drive_id, ()),
                           rec.sector_count)

    # --- volumes ----------------------------------------------------------------------------
    def create_volume(self, volume_id: int, name: str, size: int) -> VolumeInfo:
        _check_size(size)
        with self._store.lock:
            if volume_id in self._store.state.volumes:
                raise Exists(f"volume {volume_id} already exists")
            self._store.commit([CreateVolume(volume_id, name, size)])
        return self.volume_info(volume_id)

    def resize_volume(self, volume_id: int, new_size: int) -> VolumeInfo:
        """Grow a volume; shrinking is refused (data past the end would silently vanish)."""
        _check_size(new_size)
        with self._store.lock:
            vol = self.volume_record(volume_id)
            if new_size < vol.size:
                raise InvalidParameter("a volume can only grow")
            if new_size > vol.size:
                self._store.commit([ResizeVolume(volume_id, new_size)])
        return self.volume_info(volume_id)

    def delete_volume(self, volume_id: int) -> None:
        """Free every chunk of the volume, then forget it. If interrupted (crash), the
        volume still exists with some chunks reading as zeros; deleting again finishes."""
        while True:  # until no writer mapped a chunk meanwhile (none should be writing)
            self._unmap(volume_id, sorted(self.volume_record(volume_id).chunks))
            with self._store.lock:  # allocation maps chunks under this lock too
                if not self.volume_record(volume_id).chunks:
                    self._store.commit([DeleteVolume(volume_id)])
                    return

    def open_volume(self, volume_id: int) -> Volume:
        self.volume_record(volume_id)
        return Volume(self, volume_id)

    def volumes(self) -> list[VolumeInfo]:
        return [self.volume_info(v) for v in sorted(self._store.state.volumes)]

    def volume_info(self, volume_id: int) -> VolumeInfo:
        vol = self.volume_record(volume_id)
        return VolumeInfo(volume_id, vol.name, vol.size, len(vol.chunks) * CHUNK_SIZE)

    def volume_record(self, volume_id: int) -> VolumeRec:
        vol = self._store.state.volumes.get(volume_id)
        if vol is None:
            raise VolumeNotFound(f"volume {volume_id} does not exist")
        return vol

    # --- capacity ---------------------------------------------------------------------------
    def used_bytes(self) -> int:
        """Bytes of block-drive slots in use, both copies counted."""
        return self._pool.total_used_slots() * CHUNK_SIZE

    def drive_usage(self) -> list[DriveUsage]:
        state = self._store.state
        out = []
        for drive_id, rec in sorted(state.drives.items()):
            if rec.role is Role.BLOCK:
                slots = BlockLayout.for_device(rec.sector_count).slots
                used, total = self._pool.used_slots(drive_id) * CHUNK_SIZE, slots * CHUNK_SIZE
            else:
                used, total = 0, rec.sector_count * SECTOR_SIZE
            out.append(DriveUsage(drive_id, rec.node_id, rec.role, used, total,
                                  drive_id in state.failed))
        return out

    @property
    def metadata(self) -> MetaState:
        """The current metadata (read-only by convention), for tests and diagnostics."""
        return self._store.state

    @property
    def metadata_mirrors(self) -> list[int]:
        return self._store.mirror_ids

    # --- chunk access for Volume --------------------------------------------------------------
    @property
    def locks(self) -> RangeLocks:
        """The locks callers of :meth:`read_sectors` and :meth:`write_sectors` must hold."""
        return self._locks

    def copies(self, volume_id: int, chunk: int) -> list[Copy] | None:
        """The live copies of a chunk, or None if it is not mapped (reads as zeros)."""
        locs = self.volume_record(volume_id).chunks.get(chunk)
        if locs is None:
            return None
        return [c for d, slot in locs if (c := self._pool.copy(d, slot)) is not None]

    def read_sectors(self, volume_id: int, chunk: int, first: int, count: int) -> bytes:
        """Verified sectors of a chunk (zeros if unmapped). Caller holds their :attr:`locks`."""
        copies = self.copies(volume_id, chunk)
        if copies is None:
            return bytes(count * SECTOR_SIZE)
        return self._io.read(volume_id, chunk, copies, first, count)

    def read_copy(self, volume_id: int, chunk: int, drive_id: int, first: int = 0,
                  count: int = CHUNK_SIZE // SECTOR_SIZE) -> bytes:
        """Sectors of a chunk as held by its copy on ``drive_id`` alone, verified (for
        scrubbing, re-replication and diagnostics); raises VolumeDataUnavailable if any
        sector fails and VolumeNotFound if the chunk has no live copy there."""
        with self._locks.sectors(volume_id, chunk, first, count):
            copies = [c for c in self.copies(volume_id, chunk) or [] if c.drive_id == drive_id]
            if not copies:
                raise VolumeNotFound(f"volume {volume_id} chunk {chunk} has no copy there")
            return self._io.read(volume_id, chunk, copies, first, count)

    def write_sectors(self, volume_id: int, chunk: int, first: int, data: bytes) -> None:
        """Write whole sectors to both copies, allocating the chunk if needed (the allocation
        is durable on both slice mirrors before this returns). Caller holds their
        :attr:`locks`."""
        copies = self.copies(volume_id, chunk)
        if copies is None:
            copies = self._allocate(volume_id, chunk)
        elif first == 0:  # a streaming writer starts each chunk here: keep mapping ahead of it
            chunks = self.volume_record(volume_id).chunks
            if chunk - 1 in chunks and chunk + _PREALLOC // 2 not in chunks:
                self._ahead.request(volume_id, chunk)
        if not copies:
            raise VolumeDataUnavailable(f"volume {volume_id}: no copy of chunk {chunk} is live")
        with self._epochs.writing((volume_id, chunk), first, len(data) // SECTOR_SIZE) as clean:
            failed = self._io.write(volume_id, chunk, copies, first, data, clean)
        if failed:
            self._fail_drives({c.drive_id for c in failed})
            if len(failed) == len(copies):
                raise VolumeDataUnavailable(
                    f"volume {volume_id}: chunk {chunk} could not be written on any copy")

    def _allocate(self, volume_id: int, chunk: int) -> list[Copy]:
        """Map ``chunk`` to new slots, durably, before it is written.

        A streaming writer (the chunks just before this one are mapped) also gets as many
        following unmapped chunks as it has written in a row, up to :data:`_PREALLOC`, in the
        same commit: a sequential copy then pays for a metadata commit (two slice-drive
        flushes) once per up to 64 MiB instead of once per MiB, and space mapped ahead never
        exceeds what the writer already wrote. Chunks mapped ahead read as zeros.
        """
        with self._store.lock:
            vol = self.volume_record(volume_id)
            if chunk not in vol.chunks:  # another writer may have mapped it meanwhile
                behind = 0
                while behind < _PREALLOC - 1 and chunk - behind - 1 in vol.chunks:
                    behind += 1
                wanted = [chunk]
                for c in range(chunk + 1, min(chunk + 1 + behind, -(-vol.size // CHUNK_SIZE))):
                    if c in vol.chunks:
                        break
                    wanted.append(c)
                self._map_new(volume_id, wanted)
        copies = self.copies(volume_id, chunk)
        assert copies is not None
        return copies

    def _map_ahead(self, volume_id: int, chunk: int) -> None:
        """In the :class:`MapAhead` helper: a writer is at mapped ``chunk``. If the mapped run
        ahead of it is no longer than half the run behind it (``chunk`` included, at most
        :data:`_PREALLOC`), map the following chunks until the run ahead is as long as the
        run behind. So the space mapped ahead of a writer never exceeds what it has mapped
        (and, streaming, written) just behind, nor 64 MiB, as with :meth:`_allocate`; and a
        streaming writer finds its next chunks mapped, with a commit about every 32 MiB.

        Crash safety is that of :meth:`_allocate`: the new slots' entries are emptied before
        the commit, so a chunk mapped ahead and never written reads as zeros after a crash,
        and no write is ever made to a chunk before its map is durable (writers see only
        committed maps), whichever thread committed it."""
        with self._store.lock:
            vol = self.volume_record(volume_id)
            end = -(-vol.size // CHUNK_SIZE)
            behind = 1
            while behind < _PREALLOC and chunk - behind in vol.chunks:
                behind += 1
            ahead = 0
            while ahead < _PREALLOC and chunk + ahead + 1 in vol.chunks:
                ahead += 1
            if chunk not in vol.chunks or ahead > behind // 2:
                return
            wanted = []
            for c in range(chunk + ahead + 1, min(chunk + behind + 1, end)):
                if c in vol.chunks:
                    break
                wanted.append(c)
            if wanted:
                self._map_new(volume_id, wanted)

    def _map_new(self, volume_id: int, chunks: list[int]) -> None:
        """Map ``chunks`` (the first must get slots; the rest as far as space goes) in one
        commit."""
        pairs = self._take_pairs(len(chunks))
        try:
            self._store.commit([MapChunk(volume_id, c, pair)
                                for c, pair in zip(chunks, pairs, strict=False)])
        except BaseException:
            self._pool.give_back(loc for pair in pairs for loc in pair)
            raise

    def _take_pairs(self, count: int) -> list[tuple[Loc, Loc]]:
        while True:  # each failure takes a drive out, so this ends
            try:
                pairs = self._pool.take_pairs(count)
            except DriveWriteFailed as exc:
                self._fail_drives({exc.drive_id})
                continue
            for pair in pairs:  # their entries were just emptied
                for drive_id, slot in pair:
                    self._io.mark_empty(drive_id, slot)
            return pairs

    def unmap_range(self, volume_id: int, first: int, end: int) -> None:
        """Free the mapped chunks among ``first .. end-1`` (they then read as zeros)."""
        mapped = self.volume_record(volume_id).chunks
        if end - first > len(mapped):
            chunks = sorted(c for c in list(mapped) if first <= c < end)
        else:
            chunks = [c for c in range(first, end) if c in mapped]
        self._unmap(volume_id, chunks)

    def _unmap(self, volume_id: int, chunks: Sequence[int]) -> None:
        for i in range(0, len(chunks), _UNMAP_BATCH):
            self._unmap_batch(volume_id, chunks[i:i + _UNMAP_BATCH])

    def _unmap_batch(self, volume_id: int, chunks: Sequence[int]) -> None:
        # Empty the copies' checksum entries durably *before* the maps forget them, so that
        # every free slot reads as zeros when it is next allocated, whatever crashes between.
        # A drive that fails this is failed out: its slots are never handed out again.
        with self._locks.chunks(volume_id, chunks):
            vol = self.volume_record(volume_id)
            mapped = [c for c in chunks if c in vol.chunks]
            copies = [copy for c in mapped for copy in self.copies(volume_id, c) or []]
            failed: set[int] = set()
            for copy in copies:
                try:
                    self._io.clear(copy, CSUM_SECTORS)
                except Exception:
                    failed.add(copy.drive_id)
            for drive_id, dev in {c.drive_id: c.dev for c in copies}.items():
                try:
                    dev.flush()
                except Exception:
                    failed.add(drive_id)
            if failed:
                self._fail_drives(failed)
            with self._store.lock:
                locs = [loc for c in mapped for loc in vol.chunks[c]]
                self._store.commit([UnmapChunk(volume_id, c) for c in mapped])
                self._pool.give_back(locs)

    # --- durability and failures --------------------------------------------------------------
    def flush(self) -> None:
        """Make every write that completed before this call durable on all live copies."""
        self._epochs.flush(self._sync_block, lambda key: self._locks.chunks(key[0], [key[1]]))

    def flush_if_due(self) -> None:
        """Flush if many chunks were written since the last flush: a client that never
        flushes must not make the per-sector write tracking grow without bound. Callers
        hold no range lock."""
        if self._epochs.tracked > _TRACKED_CHUNKS_MAX:
            self.flush()

    def _sync_block(self) -> None:
        failed = set()
        for drive_id, dev in self._pool.devices():
            try:
                dev.flush()
            except Exception:  # a drive that cannot sync has lost writes: fail it out
                failed.add(drive_id)
        if failed:
            self._fail_drives(failed)
            if not self._pool.devices():
                raise VolumeDataUnavailable("no block drive could make its writes durable")

    def _fail_drives(self, drive_ids: set[int]) -> None:
        """Stop using these drives (block drives, and slice drives that never opened),
        durably: a copy that missed writes must never be read again, even after a restart."""
        with self._store.lock:
            state = self._store.state
            # A drive recorded in the metadata but never opened (absent at start-up) is not in
            # the pool, and is failed all the same; so is a slice drive that never opened (it
            # holds no mirror: mirrors are chosen among the drives that opened).
            new = sorted(d for d in drive_ids if self._pool.remove(d)
                         or (d in state.drives and d not in state.failed
                             and (state.drives[d].role is Role.BLOCK or d not in self._specs)))
            self._store.commit([FailDrive(d) for d in new])

    def fail_drive(self, drive_id: int) -> None:
        """Take a block drive, or a slice drive that did not open, out of service (the
        cluster's RemoveDrives / failure path; a slice drive in service goes through
        :func:`volume_repair.fail_slice_drive`)."""
        self._fail_drives({drive_id})

    def chunks_on_drive(self, drive_id: int) -> list[ChunkKey]:
        """(volume id, chunk) of every chunk with a copy on ``drive_id``."""
        return sorted((vid, c) for vid, vol in self._store.state.volumes.items()
                      for c, locs in vol.chunks.items() if any(d == drive_id for d, _ in locs))

    def rereplicate(self, drive_id: int) -> RepairReport:
        """Fail ``drive_id`` out (if in service) and give every chunk it held a new second
        copy on another node. See :func:`volume_repair.rereplicate`."""
        return volume_repair.rereplicate(self, drive_id)

    def add_drive(self, spec: DriveSpec) -> None:
        """Take a new drive into service. See :func:`volume_repair.add_drive`."""
        volume_repair.add_drive(self, spec)

    def settle(self) -> None:
        """Wait until chunks being mapped ahead of streaming writers in the background are
        mapped (for tests and diagnostics: used space changes meanwhile)."""
        self._ahead.wait_idle()

    def close(self) -> None:
        """Flush; the devices belong to the caller, who closes them."""
        self._ahead.close()
        self.flush()


def _check_size(size: int) -> None:
    if size <= 0 or size % SECTOR_SIZE:
        raise VolumeRangeError(
            f"volume size must be a positive multiple of {SECTOR_SIZE} bytes, not {size}")
