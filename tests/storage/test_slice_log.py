"""The slice-drive metadata format: replay, torn appends, compaction, foreign records."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.filedev import FileBlockDevice
from sealbox.storage.slice_log import SliceLayout
from sealbox.storage.slice_ops import (
    AddDrive,
    CreateVolume,
    DeleteVolume,
    FailDrive,
    MapChunk,
    MetaState,
    Op,
    ResizeVolume,
    Role,
    UnmapChunk,
    decode_ops,
    encode_op,
)
from sealbox.storage.slice_store import SliceStore
from sealbox.storage.volume_errors import MetadataUnavailable, NotEnoughSpace

KEY = b"slice-test-key"


def devs(root: Path, sectors: int = 64) -> list[tuple[int, FileBlockDevice]]:
    return [(n, FileBlockDevice(root / f"s{n}", sectors, create=True)) for n in (1, 2)]


def reopen(devices: list[tuple[int, FileBlockDevice]], key: bytes = KEY) -> SliceStore:
    loaded = SliceStore.load_all(devices, key)
    return SliceStore.open(loaded, SliceStore.best_of(loaded), [1, 2], key)


def test_every_op_survives_the_codec() -> None:
    ops: list[Op] = [AddDrive(3, 1, Role.BLOCK, 1 << 40), CreateVolume(1, "vøl", 1 << 30),
           ResizeVolume(1, 2 << 30), MapChunk(1, 5, ((3, 7), (4, 9))), UnmapChunk(1, 5),
           DeleteVolume(1), FailDrive(4)]
    assert decode_ops(b"".join(encode_op(op) for op in ops)) == ops
    with pytest.raises(ValueError):
        decode_ops(b"\x09")
    with pytest.raises(ValueError):
        decode_ops(encode_op(ResizeVolume(1, 2))[:-1])


def test_commits_replay_across_many_compactions(tmp_path: Path) -> None:
    devices = devs(tmp_path)  # a log of 15 sectors: compaction every few commits
    store = SliceStore.format(devices, KEY, [CreateVolume(1, "v", 1 << 30)])
    for chunk in range(300):
        store.commit([MapChunk(1, chunk, ((1, chunk), (2, chunk)))])
        if chunk % 3 == 0:
            store.commit([UnmapChunk(1, chunk)])
    again = reopen(devices)
    assert again.seq == store.seq
    assert again.state == store.state
    assert len(again.state.volumes[1].chunks) == 200


def test_a_torn_last_record_is_not_committed(tmp_path: Path) -> None:
    devices = devs(tmp_path, 256)
    store = SliceStore.format(devices, KEY, [CreateVolume(1, "v", 1 << 30)])
    store.commit([ResizeVolume(1, 2 << 30)])
    store.commit([ResizeVolume(1, 3 << 30)])
    layout = SliceLayout.for_device(256)
    for _, dev in devices:  # damage the last record's digest on both copies
        raw = bytearray(dev.read(layout.log_start + 1, 1))
        raw[60] ^= 1
        dev.write(layout.log_start + 1, bytes(raw))
    assert reopen(devices).state.volumes[1].size == 2 << 30


def test_a_snapshot_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    devices = devs(tmp_path, 16)  # 3-sector snapshot areas
    store = SliceStore.format(devices, KEY, [CreateVolume(1, "v", 1 << 30)])
    with pytest.raises(NotEnoughSpace):
        for chunk in range(2000):
            store.commit([MapChunk(1, chunk, ((1, chunk), (2, chunk)))])


def test_metadata_under_another_key_is_not_readable(tmp_path: Path) -> None:
    devices = devs(tmp_path)
    SliceStore.format(devices, KEY, [CreateVolume(1, "v", 1 << 30)])
    with pytest.raises(MetadataUnavailable):
        reopen(devices, key=b"another key")


def test_records_of_an_earlier_format_are_never_replayed(tmp_path: Path) -> None:
    devices = devs(tmp_path, 256)
    old = SliceStore.format(devices, KEY, [CreateVolume(1, "old", 1 << 30)])
    for i in range(5):
        old.commit([ResizeVolume(1, (2 + i) << 30)])
    for _, dev in devices:  # a new format on the same drives: only the superblocks change
        dev.write(0, bytes(2 * SECTOR_SIZE))
    SliceStore.format(devices, KEY, [CreateVolume(2, "new", 1 << 30)])
    assert set(reopen(devices).state.volumes) == {2}


def test_state_snapshot_rebuilds_the_same_state() -> None:
    state = MetaState()
    ops: list[Op] = [AddDrive(1, 1, Role.SLICE, 100), CreateVolume(1, "a", 4096),
                     MapChunk(1, 0, ((2, 0), (3, 0))), FailDrive(3), CreateVolume(2, "b", 8192)]
    for op in ops:
        state.apply(op)
    rebuilt = MetaState()
    for op in state.snapshot_ops():
        rebuilt.apply(op)
    assert rebuilt == state
