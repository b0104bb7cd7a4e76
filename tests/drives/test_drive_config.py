"""GetDriveConfig's drive entries, built from real drive files: what a drive reports about its
security whether it is powered on (asked directly) or not (its metadata read without powering
it on), and the counts of expected and connected drives."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from sealbox.cluster.drive_config import drive_config
from sealbox.secrets import Secret
from sealbox.storage.disk import Disk
from sealbox.storage.drive import Drive
from sealbox.storage.sed import SelfEncryptingDrive
from sealbox.storage.sed_errors import SedAuthenticationFailed, SedLockedOut
from tests.support.contract import assert_complete

SIZE = 4 << 20


def _doc(drive_id: int, path: Path, role: str = "block", slot: int = 1) -> dict[str, Any]:
    return {"driveID": drive_id, "nodeID": 1, "slot": slot, "role": role, "path": str(path),
            "capacity": SIZE, "serial": f"sealbox-test{drive_id:04d}"}


def _scribble(path: Path, offset: int, length: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(os.urandom(length))


def _nothing_powered(drive_id: int) -> SelfEncryptingDrive | None:
    return None


def test_drives_not_powered_on_are_read_without_unlocking(tmp_path: Path) -> None:
    ak = Secret(os.urandom(32))
    slice_file, block_file, plain_file = (tmp_path / n for n in ("s.img", "b.img", "p.img"))
    Disk.create(slice_file, SIZE).close()
    with Disk.create(block_file, SIZE) as disk:
        assert disk.sed is not None
        disk.sed.enable_locking(ak)
        media_id = disk.sed.media_id
    Drive.create(plain_file, SIZE).close()  # a drive file from before drives were SEDs
    torn_file = tmp_path / "t.img"
    Disk.create(torn_file, SIZE).close()
    _scribble(torn_file, 0, 2 * 4096)  # both metadata copies: nothing about it is known
    # One metadata copy torn: a power-on would rewrite it from the other, looking must not.
    _scribble(block_file, 4096, 4096)
    before = {p: p.read_bytes() for p in (slice_file, block_file)}
    docs = [_doc(1, slice_file, "slice", 0), _doc(2, block_file), _doc(3, plain_file, slot=2),
            _doc(4, tmp_path / "gone.img", slot=3), _doc(5, torn_file, slot=4)]

    config = drive_config(docs, _nothing_powered)

    assert_complete("GetDriveConfig", {"driveConfig": config})
    s, b, p, gone, torn = config["drives"]
    assert (s["driveType"], b["driveType"]) == ("Slice", "Block")
    assert s["securitySupported"] and not s["securityEnabled"] and not s["securityLocked"]
    # Locking enabled and nobody unlocked it: the drive is locked, and says whose it is.
    assert b["securitySupported"] and b["securityEnabled"] and b["securityLocked"]
    assert b["uuid"] == str(media_id) and not b["securityAtMaximum"]
    assert not p["securitySupported"] and not p["securityEnabled"]
    assert p["product"] != b["product"]
    assert not gone["connected"] and gone["scsiState"] == "Missing"
    assert gone["uuid"] == str(uuid.UUID(int=0)) and not gone["securitySupported"]
    assert all(d["connected"] and d["scsiState"] == "Running" for d in (s, b, p))
    assert torn["connected"] and torn["scsiState"] == "Unknown"
    assert torn["uuid"] == str(uuid.UUID(int=0))
    assert [d["path"] for d in config["drives"]] == [doc["path"] for doc in docs]
    assert (config["numSliceExpected"], config["numSliceActual"]) == (1, 1)
    assert (config["numBlockExpected"], config["numBlockActual"]) == (4, 3)
    assert (config["numTotalExpected"], config["numTotalActual"]) == (5, 4)
    # Looking never changed a drive: no power-on, no healed metadata, no attempt counted.
    assert {f: f.read_bytes() for f in before} == before


def test_a_powered_drive_reports_its_live_state(tmp_path: Path) -> None:
    ak = Secret(os.urandom(32))
    path = tmp_path / "d.img"
    with Disk.create(path, SIZE) as disk:
        assert disk.sed is not None
        disk.sed.enable_locking(ak)
    doc = _doc(7, path)
    with Disk.open(path, max_attempts=2) as disk:
        sed = disk.sed
        assert sed is not None

        def powered(drive_id: int) -> SelfEncryptingDrive | None:
            return sed if drive_id == 7 else None

        (entry,) = drive_config([doc], powered)["drives"]
        assert entry["securityLocked"] and not entry["securityAtMaximum"]

        disk.unlock(ak)
        (entry,) = drive_config([doc], powered)["drives"]
        assert entry["securityEnabled"] and not entry["securityLocked"]

        sed.lock()
        for _ in range(2):
            with pytest.raises(SedAuthenticationFailed):
                disk.unlock(Secret(os.urandom(32)))
        # Wrong keys exhausted: locked, and refusing every key until it is powered off.
        (entry,) = drive_config([doc], powered)["drives"]
        assert entry["securityLocked"] and entry["securityAtMaximum"]
        with pytest.raises(SedLockedOut):
            disk.unlock(ak)
