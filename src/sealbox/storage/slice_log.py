"""The on-disk metadata format of one slice drive: A/B superblocks, a record log, two snapshot
areas. Byte layout in ``docs/volumes.md``.

Crash safety rests on three rules:
- a log record counts only if its digest is right *and* its sequence number is exactly the next
  one, so a torn append, and stale records left in the log by an earlier cycle, both end replay;
- a snapshot is written to the area the newest superblock does *not* point at, flushed, and only
  then made current by writing the *older* superblock with a higher generation, so a crash
  during compaction leaves the previous superblock, snapshot and log intact;
- every structure carries the store's random id, so records of an earlier format of the same
  drive are never replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from sealbox.storage.blockdev import SECTOR_SIZE, BlockDevice
from sealbox.storage.slice_ops import MetaState, Op, decode_ops
from sealbox.storage.volume_errors import NotEnoughSpace

SB_MAGIC = b"SBXMETA1"
REC_MAGIC = b"SBXR"
VERSION = 1
DIGEST = 32
_SB = struct.Struct("<8sHHI16sQQIIQ32sQQ")  # 112 bytes, then a 32-byte digest
_REC = struct.Struct("<4sHH16sQII")  # 40 bytes, then payload, then a 32-byte digest


class MetaDigest:
    """Keyed BLAKE2b-256 over metadata structures (key optional; see docs/volumes.md)."""

    def __init__(self, key: bytes | None) -> None:
        self._base = hashlib.blake2b(digest_size=DIGEST, key=key or b"", person=b"sealbox-meta")

    def __call__(self, *parts: bytes) -> bytes:
        h = self._base.copy()
        for p in parts:
            h.update(p)
        return h.digest()


@dataclass(frozen=True)
class SliceLayout:
    """Sector ranges of one slice drive, a pure function of its size."""

    log_start: int
    log_sectors: int
    snap_sectors: int

    @classmethod
    def for_device(cls, sector_count: int) -> SliceLayout:
        usable = sector_count - 2
        log = max(4, usable // 4)
        snap = (usable - log) // 2
        if snap < 2:
            raise NotEnoughSpace("slice drive too small for volume metadata")
        return cls(2, log, snap)

    def snap_start(self, area: int) -> int:
        return self.log_start + self.log_sectors + area * self.snap_sectors


@dataclass
class Superblock:
    store_id: bytes
    gen: int
    snap_seq: int
    snap_area: int
    snap_len: int
    snap_digest: bytes

    def encode(self, layout: SliceLayout, digest: MetaDigest) -> bytes:
        body = _SB.pack(SB_MAGIC, VERSION, 0, 0, self.store_id, self.gen, self.snap_seq,
                        self.snap_area, 0, self.snap_len, self.snap_digest,
                        layout.log_sectors, layout.snap_sectors)
        return (body + digest(body)).ljust(SECTOR_SIZE, b"\0")

    @classmethod
    def decode(cls, raw: bytes, layout: SliceLayout, digest: MetaDigest) -> Superblock | None:
        body, tag = raw[:_SB.size], raw[_SB.size:_SB.size + DIGEST]
        if not hmac.compare_digest(digest(body), tag):
            return None
        (magic, version, _, _, store_id, gen, seq, area, _, snap_len, snap_digest,
         log_sectors, snap_sectors) = _SB.unpack(body)
        if magic != SB_MAGIC or version != VERSION or area not in (0, 1):
            return None
        if (log_sectors, snap_sectors) != (layout.log_sectors, layout.snap_sectors):
            return None
        return cls(store_id, gen, seq, area, snap_len, snap_digest)


def encode_record(store_id: bytes, seq: int, payload: bytes, digest: MetaDigest) -> bytes:
    body = _REC.pack(REC_MAGIC, VERSION, 0, store_id, seq, len(payload), 0) + payload
    raw = body + digest(body)
    return raw.ljust(-(-len(raw) // SECTOR_SIZE) * SECTOR_SIZE, b"\0")


@dataclass
class Loaded:
    """What one slice drive holds: its state at sequence ``seq``."""

    state: MetaState
    seq: int
    store_id: bytes
    superblock: Superblock
    sb_slot: int
    log_tail: int  # sectors used in the log area


class _LazyLog:
    """The log area, read as far as replay needs it (1 MiB at a time), not all at once."""

    _STEP = 256

    def __init__(self, dev: BlockDevice, layout: SliceLayout) -> None:
        self._dev = dev
        self._layout = layout
        self._buf = bytearray()

    def get(self, pos: int, length: int) -> bytes | None:
        """Bytes ``pos .. pos+length`` of the log area, or None if it ends before."""
        end = pos + length
        limit = self._layout.log_sectors * SECTOR_SIZE
        if end > limit:
            return None
        while len(self._buf) < end:
            done = len(self._buf) // SECTOR_SIZE
            n = min(self._STEP, self._layout.log_sectors - done)
            self._buf += self._dev.read(self._layout.log_start + done, n)
        return bytes(self._buf[pos:end])


class SliceMirror:
    """One copy of the metadata on one slice drive. Not thread-safe: the store serialises."""

    def __init__(self, drive_id: int, dev: BlockDevice, digest: MetaDigest) -> None:
        self.drive_id = drive_id
        self.dev = dev
        self.layout = SliceLayout.for_device(dev.sector_count)
        self._digest = digest
        self._sb: Superblock | None = None
        self._sb_slot = 0
        self._tail = 0

    def load(self) -> Loaded | None:
        """The newest consistent state on this drive, or None if it holds none."""
        raw = self.dev.read(0, 2)
        sbs = [(sb, i) for i in (0, 1) if (sb := Superblock.decode(
            raw[i * SECTOR_SIZE:(i + 1) * SECTOR_SIZE], self.layout, self._digest))]
        for sb, slot in sorted(sbs, key=lambda p: p[0].gen, reverse=True):
            loaded = self._load_from(sb, slot)
            if loaded is not None:
                self._sb, self._sb_slot, self._tail = sb, slot, loaded.log_tail
                return loaded
        return None

    def _load_from(self, sb: Superblock, slot: int) -> Loaded | None:
        n = -(-sb.snap_len // SECTOR_SIZE)
        if n > self.layout.snap_sectors:
            return None
        snap = self.dev.read(self.layout.snap_start(sb.snap_area), n)[:sb.snap_len]
        if not hmac.compare_digest(self._digest(sb.store_id, snap), sb.snap_digest):
            return None
        state = MetaState()
        for op in decode_ops(snap):
            state.apply(op)
        log = _LazyLog(self.dev, self.layout)
        seq, tail = sb.snap_seq, 0
        while (ops := self._record_at(log, tail * SECTOR_SIZE, sb.store_id, seq + 1)) is not None:
            for op in ops[0]:
                state.apply(op)
            seq, tail = seq + 1, tail + ops[1]
        return Loaded(state, seq, sb.store_id, sb, slot, tail)

    def _record_at(self, log: _LazyLog, pos: int, store_id: bytes,
                   want_seq: int) -> tuple[list[Op], int] | None:
        """The ops of the record at ``pos`` and its length in sectors, if it is the next one."""
        header = log.get(pos, _REC.size)
        if header is None:
            return None
        magic, version, _, sid, seq, length, _ = _REC.unpack(header)
        if (magic, version, sid, seq) != (REC_MAGIC, VERSION, store_id, want_seq):
            return None
        raw = log.get(pos, _REC.size + length + DIGEST)
        if raw is None:
            return None
        body, tag = raw[:-DIGEST], raw[-DIGEST:]
        if not hmac.compare_digest(self._digest(body), tag):
            return None
        return decode_ops(body[_REC.size:]), -(-len(raw) // SECTOR_SIZE)

    def append(self, record: bytes) -> bool:
        """Write ``record`` at the log tail (not flushed); False if the log has no room."""
        n = len(record) // SECTOR_SIZE
        if self._tail + n > self.layout.log_sectors:
            return False
        self.dev.write(self.layout.log_start + self._tail, record)
        self._tail += n
        return True

    def compact(self, store_id: bytes, seq: int, snapshot: bytes) -> None:
        """Make ``snapshot`` (the state at ``seq``) current and empty the log; durable."""
        n = -(-len(snapshot) // SECTOR_SIZE)
        if n > self.layout.snap_sectors:
            raise OverflowError("metadata snapshot larger than the slice drive's snapshot area")
        area = 1 - self._sb.snap_area if self._sb else 0
        gen = self._sb.gen + 1 if self._sb else 1
        self.dev.write(self.layout.snap_start(area), snapshot.ljust(n * SECTOR_SIZE, b"\0"))
        self.dev.flush()
        sb = Superblock(store_id, gen, seq, area, len(snapshot), self._digest(store_id, snapshot))
        slot = 1 - self._sb_slot if self._sb else 0
        if self._sb is None:  # a fresh or unreadable drive: retire whatever slot 1 holds
            self.dev.write(1, bytes(SECTOR_SIZE))
        self.dev.write(slot, sb.encode(self.layout, self._digest))
        self.dev.flush()
        self._sb, self._sb_slot, self._tail = sb, slot, 0
