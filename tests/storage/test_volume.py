"""Volumes read back what was written: random, unaligned, across chunks, concurrent, reopened."""

from __future__ import annotations

import os
import random
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealbox.nbd.export import Export
from sealbox.storage.chunk import CHUNK_SIZE
from sealbox.storage.engine import DriveSpec, StorageEngine
from sealbox.storage.filedev import FileBlockDevice
from sealbox.storage.slice_ops import Role
from sealbox.storage.volume_errors import NotEnoughSpace, VolumeRangeError

KEY = b"volume-test-key-0123456789abcdef"
VOL_SIZE = 6 * CHUNK_SIZE


def drives(root: Path, create: bool, nodes: int = 3, block_sectors: int = 8192,
           ) -> list[DriveSpec]:
    out = []
    for n in range(1, nodes + 1):
        out.append(DriveSpec(10 * n, n, Role.SLICE,
                             FileBlockDevice(root / f"slice{n}", 1024, create=create)))
        out.append(DriveSpec(10 * n + 1, n, Role.BLOCK,
                             FileBlockDevice(root / f"block{n}", block_sectors, create=create)))
    return out


def open_engine(root: Path, create: bool = False, **kw: int) -> StorageEngine:
    return StorageEngine(drives(root, create, **kw), integrity_key=KEY, create=create)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[StorageEngine]:
    eng = open_engine(tmp_path, create=True)
    eng.create_volume(1, "vol1", VOL_SIZE)
    yield eng
    eng.close()


def assert_two_nodes(eng: StorageEngine) -> None:
    nodes = {d.drive_id: d.node_id for d in eng.drive_usage()}
    for vol in eng.metadata.volumes.values():
        for locs in vol.chunks.values():
            assert len(locs) == 2
            assert nodes[locs[0][0]] != nodes[locs[1][0]]


writes = st.lists(st.tuples(st.integers(0, VOL_SIZE - 1), st.integers(1, 3_000_000),
                            st.integers(0, 255), st.sampled_from(["write", "trim"])),
                  min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writes)
def test_random_writes_and_trims_read_back_before_and_after_reopen(
        ops: list[tuple[int, int, int, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        eng = open_engine(root, create=True)
        eng.create_volume(1, "v", VOL_SIZE)
        vol = eng.open_volume(1)
        model = bytearray(VOL_SIZE)
        for offset, length, fill, kind in ops:
            length = min(length, VOL_SIZE - offset)
            data = bytes([fill if kind == "write" else 0]) * length
            if kind == "write":
                vol.write(offset, data)
            else:
                vol.trim(offset, length)
            model[offset:offset + length] = data
        assert vol.read(0, VOL_SIZE) == model
        assert_two_nodes(eng)
        eng.close()
        again = open_engine(root).open_volume(1)
        assert again.read(0, VOL_SIZE) == model


def test_unwritten_space_reads_as_zeros_and_costs_nothing(engine: StorageEngine) -> None:
    vol = engine.open_volume(1)
    assert vol.read(0, VOL_SIZE) == bytes(VOL_SIZE)
    assert engine.used_bytes() == 0
    vol.write(CHUNK_SIZE + 10, b"x")
    assert engine.used_bytes() == 2 * CHUNK_SIZE  # one chunk, two copies
    assert vol.read(CHUNK_SIZE, 20) == bytes(10) + b"x" + bytes(9)
    vol.write(4 * CHUNK_SIZE, b"y")  # a random writer gets no chunks ahead
    assert engine.used_bytes() == 4 * CHUNK_SIZE


def test_a_streaming_writer_gets_chunks_ahead_that_read_as_zeros(
        engine: StorageEngine) -> None:
    vol = engine.open_volume(1)
    vol.write(0, b"a" * 2 * CHUNK_SIZE)  # chunk 1 follows one mapped chunk: one ahead
    assert engine.volume_info(1).allocated_bytes == 3 * CHUNK_SIZE
    assert vol.read(2 * CHUNK_SIZE, CHUNK_SIZE) == bytes(CHUNK_SIZE)
    vol.write(3 * CHUNK_SIZE, b"b" * 4096)  # three mapped behind: the last two ahead
    assert engine.volume_info(1).allocated_bytes == VOL_SIZE
    assert vol.read(3 * CHUNK_SIZE, 3 * CHUNK_SIZE) == b"b" * 4096 + bytes(3 * CHUNK_SIZE - 4096)
    assert_two_nodes(engine)


def test_unaligned_write_keeps_its_neighbours(engine: StorageEngine) -> None:
    vol = engine.open_volume(1)
    base = os.urandom(3 * 4096)
    vol.write(CHUNK_SIZE - 4096, base)  # straddles a chunk boundary
    vol.write(CHUNK_SIZE - 3, b"abcdef")
    want = bytearray(base)
    want[4093:4099] = b"abcdef"
    assert vol.read(CHUNK_SIZE - 4096, 3 * 4096) == want


def test_concurrent_writers_to_one_sector_lose_nothing(engine: StorageEngine) -> None:
    vol = engine.open_volume(1)
    def writer(i: int) -> None:
        for _ in range(40):
            vol.write(i * 16 + 1, bytes([i + 1]) * 16)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = vol.read(0, 4096)
    for i in range(8):  # every thread wrote its own bytes of the same sector
        assert got[i * 16 + 1:i * 16 + 17] == bytes([i + 1]) * 16


def test_concurrent_writers_and_readers_across_chunks(engine: StorageEngine) -> None:
    vol = engine.open_volume(1)
    blobs = {i: os.urandom(100_000) for i in range(6)}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            rng = random.Random(i)
            for _ in range(15):
                vol.write(i * CHUNK_SIZE + 500_000, blobs[i])
                vol.read(rng.randrange(VOL_SIZE - 70_000), 70_000)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, blob in blobs.items():
        assert vol.read(i * CHUNK_SIZE + 500_000, len(blob)) == blob


def test_trim_and_write_zeroes_free_whole_chunks_and_zero_the_edges(
        engine: StorageEngine) -> None:
    vol = engine.open_volume(1)
    vol.write(0, b"\xff" * VOL_SIZE)
    assert engine.used_bytes() == 2 * VOL_SIZE
    vol.trim(CHUNK_SIZE - 100, 2 * CHUNK_SIZE + 200)
    want = bytearray(b"\xff" * VOL_SIZE)
    want[CHUNK_SIZE - 100:3 * CHUNK_SIZE + 100] = bytes(2 * CHUNK_SIZE + 200)
    assert vol.read(0, VOL_SIZE) == want
    assert engine.used_bytes() == 2 * (VOL_SIZE - 2 * CHUNK_SIZE)
    vol.write_zeroes(4 * CHUNK_SIZE, CHUNK_SIZE, fua=True)
    want[4 * CHUNK_SIZE:5 * CHUNK_SIZE] = bytes(CHUNK_SIZE)
    assert vol.read(0, VOL_SIZE) == want
    vol.write(2 * CHUNK_SIZE, b"back")  # a freed chunk can be written again
    assert vol.read(2 * CHUNK_SIZE, 8) == b"back" + bytes(4)


def test_writers_of_one_chunk_run_alongside_readers(engine: StorageEngine) -> None:
    """Four writers, one per 256 KiB group of a chunk (sharing no checksum sector), with
    unaligned writes, while readers read the whole chunk: no read ever fails."""
    vol = engine.open_volume(1)
    group = 256 * 1024
    errors: list[BaseException] = []
    final: dict[int, bytes] = {}

    def writer(g: int) -> None:
        try:
            rng = random.Random(g)
            for n in range(30):
                data = bytes([g * 40 + n]) * rng.randrange(1, 20_000)
                offset = g * group + rng.randrange(group - len(data))
                vol.write(offset, data)
                final[g] = vol.read(g * group, group)
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(30):
                vol.read(0, CHUNK_SIZE)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(g,)) for g in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert vol.read(0, CHUNK_SIZE) == b"".join(final[g] for g in range(4))


def test_writers_racing_flushes_keep_every_write(engine: StorageEngine) -> None:
    vol = engine.open_volume(1)
    stop = threading.Event()
    errors: list[BaseException] = []
    last: dict[int, bytes] = {}

    def writer(i: int) -> None:
        try:
            for n in range(60):  # rewrites of the same sectors, clean and dirty
                data = bytes([i * 16 + n % 16]) * 8192
                vol.write(i * CHUNK_SIZE + 4096 * (n % 3), data, fua=n % 7 == 0)
                last[i * 3 + n % 3] = data
        except BaseException as exc:
            errors.append(exc)

    def flusher() -> None:
        while not stop.is_set():
            vol.flush()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    flushers = [threading.Thread(target=flusher) for _ in range(2)]
    for t in threads + flushers:
        t.start()
    for t in threads:
        t.join(timeout=60)
    stop.set()
    for t in flushers:
        t.join(timeout=60)
    assert not errors
    assert not any(t.is_alive() for t in threads + flushers), "deadlock"
    for key, data in last.items():
        i, k = divmod(key, 3)
        got = vol.read(i * CHUNK_SIZE + 4096 * k, 8192)
        # later writes overlap earlier ones by a sector; the first sector is always this one's
        assert got[:4096] == data[:4096]


def test_a_volume_is_an_nbd_export(engine: StorageEngine) -> None:
    export: Export = engine.open_volume(1)  # checked by mypy: the shapes match
    export.write_zeroes(0, 4096, fua=True)
    assert export.read(0, 4096) == bytes(4096)


def test_requests_outside_the_volume_are_refused(engine: StorageEngine) -> None:
    vol = engine.open_volume(1)
    assert vol.read(VOL_SIZE, 0) == b""
    with pytest.raises(VolumeRangeError):
        vol.read(VOL_SIZE - 1, 2)
    with pytest.raises(VolumeRangeError):
        vol.write(-1, b"x")
    assert vol.name == "vol1"
    assert vol.size == VOL_SIZE


def test_allocation_beyond_capacity_is_refused_clearly(tmp_path: Path) -> None:
    eng = open_engine(tmp_path, create=True, nodes=2, block_sectors=1024)  # 3 slots per drive
    eng.create_volume(1, "big", 8 * CHUNK_SIZE)
    vol = eng.open_volume(1)
    for i in range(3):
        vol.write(i * CHUNK_SIZE, b"x")
    with pytest.raises(NotEnoughSpace):
        vol.write(3 * CHUNK_SIZE, b"x")
    assert vol.read(0, 1) == b"x"


def test_one_node_cannot_hold_two_copies(tmp_path: Path) -> None:
    specs = drives(tmp_path, True)
    for d in specs:  # every block drive on node 1
        if d.role is Role.BLOCK:
            specs[specs.index(d)] = DriveSpec(d.drive_id, 1, d.role, d.device)
    eng = StorageEngine(specs, integrity_key=KEY, create=True)
    eng.create_volume(1, "v", VOL_SIZE)
    with pytest.raises(NotEnoughSpace, match="two different nodes"):
        eng.open_volume(1).write(0, b"x")
