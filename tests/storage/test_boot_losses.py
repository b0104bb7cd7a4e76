"""When drives missing at start-up may be failed (sealbox.cluster.boot_losses), on a real
volume engine over drive files: block drives whose chunks all keep a copy, never a slice
drive, never two whole nodes, never a chunk's last copy; and failing them is recorded in the
volume metadata before anything is served."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sealbox.cluster.boot_losses import fail_in_engine, unsafe_reason
from sealbox.storage.chunk import CHUNK_SIZE
from sealbox.storage.engine import DriveSpec, StorageEngine
from sealbox.storage.filedev import FileBlockDevice
from sealbox.storage.slice_ops import Role
from sealbox.storage.volume_repair import chunks_without_live_copy

KEY = b"boot-losses-test-key-0123456789a"
BLOCK_SECTORS = 8192


def _specs(root: Path, create: bool, missing: set[int] = frozenset()) -> list[DriveSpec]:
    """Three nodes of one slice drive (id 10n) and one block drive (10n+1), minus
    ``missing``."""
    out = []
    for n in (1, 2, 3):
        if 10 * n not in missing:
            out.append(DriveSpec(10 * n, n, Role.SLICE,
                                 FileBlockDevice(root / f"slice{n}", 256, create=create)))
        if 10 * n + 1 not in missing:
            out.append(DriveSpec(10 * n + 1, n, Role.BLOCK, FileBlockDevice(
                root / f"block{n}", BLOCK_SECTORS, create=create)))
    return out


def _doc(eid: int) -> dict[str, Any]:
    return {"driveID": eid, "nodeID": eid // 10, "role": "slice" if eid % 10 == 0 else "block"}


ALL = [_doc(10 * n + k) for n in (1, 2, 3) for k in (0, 1)]


def _written(root: Path) -> bytes:
    eng = StorageEngine(_specs(root, True), integrity_key=KEY, create=True)
    eng.create_volume(1, "v", 6 * CHUNK_SIZE)
    blob = os.urandom(6 * CHUNK_SIZE)  # six chunks: every pair of nodes holds some
    eng.open_volume(1).write(0, blob, fua=True)
    eng.close()
    return blob


def test_block_drives_are_failed_durably_and_the_data_stays(tmp_path: Path) -> None:
    blob = _written(tmp_path)
    missing = {11, 21}  # block drives of two nodes: the chunks copied on both are gone
    eng = StorageEngine(_specs(tmp_path, False, missing), integrity_key=KEY)
    assert unsafe_reason(eng, {m: _doc(m) for m in missing}, ALL) is not None
    eng.close()
    missing = {11}
    eng = StorageEngine(_specs(tmp_path, False, missing), integrity_key=KEY)
    broken = {11: _doc(11)}
    assert unsafe_reason(eng, broken, ALL) is None
    fail_in_engine(eng, broken)
    assert 11 in eng.metadata.failed
    assert eng.open_volume(1).read(0, len(blob)) == blob
    eng.close()
    # Durable: reopened with the drive back, its stale copies are not used.
    eng = StorageEngine(_specs(tmp_path, False), integrity_key=KEY)
    assert 11 in eng.metadata.failed
    assert eng.open_volume(1).read(0, len(blob)) == blob
    eng.close()


def test_a_missing_slice_drive_fails_nothing(tmp_path: Path) -> None:
    _written(tmp_path)
    eng = StorageEngine(_specs(tmp_path, False, {20}), integrity_key=KEY)
    reason = unsafe_reason(eng, {20: _doc(20)}, ALL)
    assert reason is not None and "slice drive(s) 20" in reason
    eng.close()


def test_two_whole_nodes_missing_fails_nothing(tmp_path: Path) -> None:
    _written(tmp_path)
    blocks = {21: _doc(21), 31: _doc(31)}
    eng = StorageEngine(_specs(tmp_path, False, set(blocks)), integrity_key=KEY)
    # Nodes 2 and 3 hold nothing but these block drives: whole nodes, whatever the chunks say.
    reason = unsafe_reason(eng, blocks, [_doc(10), _doc(11), *blocks.values()])
    assert reason is not None and "nodes 2, 3" in reason
    eng.close()


def test_a_chunks_last_copy_on_a_missing_drive_fails_nothing(tmp_path: Path) -> None:
    _written(tmp_path)
    eng = StorageEngine(_specs(tmp_path, False), integrity_key=KEY)
    eng.fail_drive(21)  # node 2's block drive failed before the shutdown, not re-protected
    eng.close()
    eng = StorageEngine(_specs(tmp_path, False, {11}), integrity_key=KEY)  # node 1's missing
    reason = unsafe_reason(eng, {11: _doc(11)}, ALL)
    assert reason is not None and "no copy on the drives that opened" in reason
    eng.close()


def test_chunks_lost_before_do_not_count_against_another_drive(tmp_path: Path) -> None:
    _written(tmp_path)
    eng = StorageEngine(_specs(tmp_path, False), integrity_key=KEY)
    eng.fail_drive(21)
    eng.fail_drive(31)  # chunks copied on nodes 2 and 3 are lost (both copies failed)
    assert chunks_without_live_copy(eng, {21, 31}) > 0
    # ...but they are not node 1's: losing node 1's block drive would lose nothing more.
    assert chunks_without_live_copy(eng, {11}) == 0
    eng.close()
