"""What a streaming writer gets: chunks mapped ahead of it in the background, and fresh chunks
written without reading their (known empty) checksum sectors."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.chunk import CHUNK_SIZE, CSUM_SECTORS, BlockLayout
from sealbox.storage.engine import DriveSpec, StorageEngine
from sealbox.storage.filedev import FileBlockDevice
from sealbox.storage.slice_ops import Role
from sealbox.storage.volume_mapahead import MapAhead

KEY = b"streaming-test-key-0123456789abc"
BLOCK_SECTORS = 16384  # 62 slots per drive
VOL_CHUNKS = 64
PIECE = 256 * 1024  # what nbdcopy sends


class CountingDevice:
    """A file device that counts reads of the checksum area (the first sectors)."""

    def __init__(self, dev: FileBlockDevice) -> None:
        self.dev = dev
        layout = BlockLayout.for_device(dev.sector_count)
        self.csum_end = layout.slots * CSUM_SECTORS
        self.csum_reads = 0

    @property
    def sector_count(self) -> int:
        return self.dev.sector_count

    def read(self, sector: int, count: int) -> bytes:
        if sector < self.csum_end:
            self.csum_reads += 1
        return self.dev.read(sector, count)

    def write(self, sector: int, data: bytes) -> None:
        self.dev.write(sector, data)

    def flush(self) -> None:
        self.dev.flush()


def specs(root: Path, create: bool) -> tuple[list[DriveSpec], list[CountingDevice]]:
    out, blocks = [], []
    for n in (1, 2, 3):
        out.append(DriveSpec(10 * n, n, Role.SLICE,
                             FileBlockDevice(root / f"slice{n}", 1024, create=create)))
        block = CountingDevice(FileBlockDevice(root / f"block{n}", BLOCK_SECTORS, create=create))
        blocks.append(block)
        out.append(DriveSpec(10 * n + 1, n, Role.BLOCK, block))
    return out, blocks


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[StorageEngine, list[CountingDevice]]]:
    drives, blocks = specs(tmp_path, create=True)
    eng = StorageEngine(drives, integrity_key=KEY, create=True)
    eng.create_volume(1, "stream", VOL_CHUNKS * CHUNK_SIZE)
    yield eng, blocks
    eng.close()


def mapped(eng: StorageEngine) -> list[int]:
    return sorted(eng.metadata.volumes[1].chunks)


def stream(eng: StorageEngine, first_chunk: int, chunks: int, fill: bytes) -> None:
    vol = eng.open_volume(1)
    for pos in range(first_chunk * CHUNK_SIZE, (first_chunk + chunks) * CHUNK_SIZE, PIECE):
        vol.write(pos, fill * PIECE)


def test_a_streaming_writer_finds_its_next_chunks_mapped(
        engine: tuple[StorageEngine, list[CountingDevice]]) -> None:
    eng, _ = engine
    stream(eng, 0, 24, b"s")
    eng.settle()
    have = mapped(eng)
    assert have == list(range(len(have)))  # one run from the start
    # mapped ahead of the writer (chunk 23), never more than the run behind it
    assert 24 < len(have) <= 2 * 24
    vol = eng.open_volume(1)
    assert vol.read(0, 24 * CHUNK_SIZE) == b"s" * (24 * CHUNK_SIZE)
    assert vol.read(24 * CHUNK_SIZE, (len(have) - 24) * CHUNK_SIZE) == bytes(
        (len(have) - 24) * CHUNK_SIZE)


def test_mapping_ahead_follows_the_run_behind_and_leaves_random_writers_alone(
        engine: tuple[StorageEngine, list[CountingDevice]]) -> None:
    eng, _ = engine
    vol = eng.open_volume(1)
    vol.write(40 * CHUNK_SIZE, b"r" * 4096)  # a lone chunk: nothing behind, nothing ahead
    vol.write(40 * CHUNK_SIZE, b"r" * 4096)
    eng.settle()
    assert mapped(eng) == [40]
    stream(eng, 0, 4, b"a")  # chunks 0-3, then ask as if the writer were at chunk 3
    eng.settle()
    before = mapped(eng)
    eng._map_ahead(1, 3)  # ahead <= behind/2 triggers; it then maps up to the run behind
    after = [c for c in mapped(eng) if c != 40]
    assert after == list(range(len(after)))
    assert len(after) - 4 <= 4  # ahead of chunk 3 at most as many as mapped up to it
    assert set(before) <= set(mapped(eng))
    eng._map_ahead(1, 39)  # chunk 39 is not mapped: nothing to do
    eng._map_ahead(1, VOL_CHUNKS - 1)  # the end of the volume: nothing beyond it
    assert eng.volume_info(1).allocated_bytes == len(mapped(eng)) * CHUNK_SIZE


def test_a_fresh_chunk_is_written_without_reading_its_checksum_sectors(
        engine: tuple[StorageEngine, list[CountingDevice]]) -> None:
    eng, blocks = engine
    vol = eng.open_volume(1)
    stream(eng, 0, 8, b"f")
    eng.settle()
    assert sum(b.csum_reads for b in blocks) == 0
    vol.write(PIECE, b"g" * PIECE)  # a rewrite reads the entries it updates
    assert sum(b.csum_reads for b in blocks) == 2  # one checksum sector, on each copy
    assert vol.read(0, 2 * PIECE) == b"f" * PIECE + b"g" * PIECE


def test_entries_refilled_after_a_trim_are_read_again(
        engine: tuple[StorageEngine, list[CountingDevice]]) -> None:
    eng, _ = engine
    vol = eng.open_volume(1)
    data = os.urandom(CHUNK_SIZE)
    vol.write(0, data, fua=True)
    vol.trim(0, CHUNK_SIZE)
    vol.write(SECTOR_SIZE, b"h" * SECTOR_SIZE)  # the chunk again, maybe in the same slot
    vol.write(3 * SECTOR_SIZE, b"i" * SECTOR_SIZE)
    want = bytes(SECTOR_SIZE) + b"h" * SECTOR_SIZE + bytes(SECTOR_SIZE) + b"i" * SECTOR_SIZE
    assert vol.read(0, 4 * SECTOR_SIZE) == want
    assert vol.read(4 * SECTOR_SIZE, CHUNK_SIZE - 4 * SECTOR_SIZE) == bytes(
        CHUNK_SIZE - 4 * SECTOR_SIZE)


def test_the_helper_coalesces_requests_and_outlives_failures() -> None:
    calls: list[tuple[int, int]] = []
    gate = threading.Event()

    def work(volume_id: int, chunk: int) -> None:
        gate.wait(5)
        calls.append((volume_id, chunk))
        if chunk == 2:
            raise RuntimeError("no space")

    helper = MapAhead(work)
    helper.request(1, 1)
    helper.request(1, 2)
    helper.request(1, 2)  # the same place, still pending: dropped
    helper.request(1, 3)
    gate.set()
    helper.wait_idle()
    assert calls == [(1, 1), (1, 2), (1, 3)]  # a failed request did not stop the helper
    helper.request(1, 2)
    helper.wait_idle()
    assert calls[-1] == (1, 2)  # done requests may come again
    helper.close()
    helper.request(1, 4)  # after close: ignored
    helper.wait_idle()
    assert (1, 4) not in calls
