"""A volume as the NBD layer sees it (structurally an ``nbd.export.Export``).

Byte requests are cut at chunk boundaries; each piece runs under the locks of the sector groups
it touches, so that two threads writing parts of the same sector never lose one of the writes
(the read-modify-write of a partial sector is atomic with respect to other writers). Aligned
pieces go to the devices as one run per copy; only partial first and last sectors are read back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.chunk import CHUNK_SIZE
from sealbox.storage.volume_errors import VolumeRangeError

if TYPE_CHECKING:
    from sealbox.storage.engine import StorageEngine


def _pieces(offset: int, length: int) -> Iterator[tuple[int, int, int]]:
    """(chunk, start, end) byte ranges within each chunk that ``offset, length`` touches."""
    end = offset + length
    while offset < end:
        chunk, start = divmod(offset, CHUNK_SIZE)
        stop = min(CHUNK_SIZE, start + end - offset)
        yield chunk, start, stop
        offset += stop - start


class Volume:
    """Thread-safe byte access to one volume. Raises ``VolumeNotFound`` once deleted,
    :class:`VolumeRangeError` outside the volume and ``VolumeDataUnavailable`` (EIO) when
    some data verifies on no copy."""

    def __init__(self, engine: StorageEngine, volume_id: int) -> None:
        self._engine = engine
        self.volume_id = volume_id

    @property
    def name(self) -> str:
        return self._engine.volume_record(self.volume_id).name

    @property
    def size(self) -> int:
        return self._engine.volume_record(self.volume_id).size

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise VolumeRangeError(
                f"request {offset}+{length} is outside volume {self.volume_id} of {self.size}")

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        parts = [self._read_piece(*p) for p in _pieces(offset, length)]
        return parts[0] if len(parts) == 1 else b"".join(parts)  # b"" for length 0

    def _read_piece(self, chunk: int, start: int, end: int) -> bytes:
        first, last = start // SECTOR_SIZE, -(-end // SECTOR_SIZE)
        with self._engine.locks.sectors(self.volume_id, chunk, first, last - first):
            raw = self._engine.read_sectors(self.volume_id, chunk, first, last - first)
        skip = start - first * SECTOR_SIZE
        return raw if skip == 0 and len(raw) == end - start else raw[skip:skip + end - start]

    def write(self, offset: int, data: bytes, fua: bool = False) -> None:
        self._check(offset, len(data))
        view = memoryview(data)
        pos = 0
        for chunk, start, end in _pieces(offset, len(data)):
            piece = view[pos:pos + end - start]
            self._write_piece(chunk, start, end, data if len(piece) == len(data) else piece)
            pos += end - start
        if fua:
            self.flush()
        else:
            self._engine.flush_if_due()

    def _write_piece(self, chunk: int, start: int, end: int, piece: bytes | memoryview) -> None:
        first, last = start // SECTOR_SIZE, -(-end // SECTOR_SIZE)
        head, tail = start % SECTOR_SIZE, end % SECTOR_SIZE
        engine, vid = self._engine, self.volume_id
        with engine.locks.sectors(vid, chunk, first, last - first):
            if head or tail:
                buf = bytearray((last - first) * SECTOR_SIZE)
                if head:
                    buf[:SECTOR_SIZE] = engine.read_sectors(vid, chunk, first, 1)
                if tail and (last - 1 > first or not head):
                    buf[-SECTOR_SIZE:] = engine.read_sectors(vid, chunk, last - 1, 1)
                buf[head:head + end - start] = piece
                data = bytes(buf)
            else:
                data = piece if isinstance(piece, bytes) else bytes(piece)
            engine.write_sectors(vid, chunk, first, data)

    def flush(self) -> None:
        self._engine.flush()

    def trim(self, offset: int, length: int) -> None:
        """Whole chunks are freed; the ragged edges are written with zeros (if mapped)."""
        self._check(offset, length)
        first, end = -(-offset // CHUNK_SIZE), (offset + length) // CHUNK_SIZE
        if first >= end:  # no whole chunk: the range is one or two ragged edges
            first = end = offset // CHUNK_SIZE
        edges = [(offset, first * CHUNK_SIZE), (max(end * CHUNK_SIZE, offset), offset + length)]
        for lo, hi in edges:
            for chunk, start, stop in _pieces(lo, hi - lo):
                if chunk in self._engine.volume_record(self.volume_id).chunks:
                    self._write_piece(chunk, start, stop, bytes(stop - start))
        # a discard of a whole device must not walk a million unmapped chunks
        self._engine.unmap_range(self.volume_id, first, end)

    def write_zeroes(self, offset: int, length: int, fua: bool = False) -> None:
        self.trim(offset, length)  # a freed chunk reads as zeros, so the two coincide
        if fua:
            self.flush()
