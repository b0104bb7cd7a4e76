"""RemoveDrives moves a healthy drive's data off first; SecureEraseDrives crypto-erases an
available drive; bad input gets clean Element errors; kill -9 during a resync resumes it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from solidfire.common import ApiServerError
from solidfire.models import NewDrive

from tests.drives.helpers import (
    MIB,
    drive,
    drive_path,
    ever_raised,
    faults,
    no_drive_faults,
    open_fault,
    read_back,
    sealbox_cli,
    sfcli,
    wait_job,
    write_random,
)
from tests.support.contract import assert_complete
from tests.support.proc import SealboxProcess, wait_until

SECTOR = 4096


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealboxProcess]:
    proc = SealboxProcess(tmp_path_factory.mktemp("rm") / "data", drive_size="128MiB",
                          extra=["--monitor-interval", "0.2"]).start()
    yield proc
    proc.stop()


def _plain_sectors(cluster: SealboxProcess, path: Path, count: int) -> dict[int, bytes]:
    """Non-zero data-area sectors of a drive file, decrypted with the cluster's master key."""
    from sealbox.storage.disk import Disk
    from sealbox.storage.keysource import InternalKeyStore

    out = {}
    with Disk.open(path) as disk:
        d = disk.drive()
        d.unlock(InternalKeyStore(cluster.data_dir / "keys" / "master"))
        for sector in range(0, d.sector_count, 61):
            raw = d.read(sector, 1)
            if any(raw):
                out[sector] = raw
            if len(out) >= count:
                break
    return out


def test_remove_moves_data_first_then_secure_erase(cluster: SealboxProcess,
                                                    tmp_path: Path) -> None:
    sf = cluster.element()
    account = sf.add_account(username="rm").account_id
    sf.create_volume(name="keep", account_id=account, total_size=40 * MIB)
    data = write_random(cluster, "keep", tmp_path / "k.img", 40 * MIB)
    victim = drive(cluster, 3)  # node 1, slot 2: a block drive
    home = tmp_path / "home"
    home.mkdir()
    answer = json.loads(sfcli(cluster, home, "drive", "remove", "--drives", "3"))
    assert_complete("RemoveDrives", answer["result"])
    result = wait_job(cluster, answer["result"]["asyncHandle"])
    assert result["resultType"] == "DriveRemoval"
    assert drive(cluster, 3)["status"] == "available"
    assert not ever_raised(cluster, "blocksDegraded")  # never a chunk with one copy
    assert read_back(cluster, "keep", tmp_path / "b.img") == data
    path = drive_path(cluster, victim["nodeID"], victim["slot"])
    before = _plain_sectors(cluster, path, 8)
    assert before, "the removed drive held data"

    raw = cluster.rpc("SecureEraseDrives", {"drives": ["3"]})["result"]
    assert_complete("SecureEraseDrives", raw)
    assert wait_job(cluster, raw["asyncHandle"])["resultType"] == "DriveErase"
    assert drive(cluster, 3)["status"] == "available"
    after = _plain_sectors(cluster, path, 10_000)
    for sector, plain in before.items():
        assert after.get(sector) != plain  # the old contents no longer decrypt

    added = json.loads(sfcli(cluster, home, "drive", "add", "--drives", "--driveid", "3",
                             "--type", "block"))["result"]
    assert_complete("AddDrives", added)
    wait_job(cluster, added["asyncHandle"])
    assert drive(cluster, 3)["status"] == "active"
    wait_until(lambda: no_drive_faults(cluster), 20, "no drive faults")
    assert read_back(cluster, "keep", tmp_path / "c.img") == data


def test_bad_drive_requests_get_element_errors(cluster: SealboxProcess) -> None:
    cases = [
        ("RemoveDrives", {"drives": [999]}, "xDriveIDDoesNotExist"),
        ("SecureEraseDrives", {"drives": [999]}, "xDriveIDDoesNotExist"),
        ("SecureEraseDrives", {"drives": [1]}, "xAPINotPermitted"),  # active
        ("AddDrives", {"drives": [{"driveID": 1}]}, "xAPINotPermitted"),
        ("RemoveDrives", {"drives": ["x"]}, "xInvalidParameter"),
        ("RemoveDrives", {"drives": []}, "xInvalidParameter"),
        ("RemoveDrives", {"drives": [2, 2]}, "xInvalidParameter"),
        ("RemoveDrives", {}, "xMissingParameter"),
    ]
    for method, params, name in cases:
        err = cluster.rpc(method, params)["error"]
        assert err["name"] == name, (method, params, err)
    err = cluster.rpc("SecureEraseDrives", {"drives": [1]})["error"]
    assert "only available drives" in err["message"] and "ListDrives" in err["message"]
    with pytest.raises(ApiServerError) as e:
        cluster.element().remove_drives(drives=[12345])
    assert e.value.error_name == "xDriveIDDoesNotExist"


def test_kill_during_resync_resumes(tmp_path: Path) -> None:
    os.environ["SEALBOX_TEST_RESYNC_STEP_DELAY"] = "3.0"
    try:
        proc = SealboxProcess(tmp_path / "data", drive_size="128MiB", nodes=2,
                              extra=["--monitor-interval", "0.2"]).start()
    finally:
        del os.environ["SEALBOX_TEST_RESYNC_STEP_DELAY"]
    try:
        sf = proc.element()
        account = sf.add_account(username="k").account_id
        sf.create_volume(name="big", account_id=account, total_size=96 * MIB)
        data = write_random(proc, "big", tmp_path / "big.img", 96 * MIB)
        drive_path(proc, 1, 1).unlink()

        def midway() -> dict[str, int] | None:
            jobs = proc.rpc("ListAsyncResults", {"asyncResultTypes": ["DriveResync"]})
            for job in jobs["result"]["asyncHandles"]:
                details = job["data"]
                if not job["completed"] and 0 < details.get("chunksDone", 0) < \
                        details.get("chunksTotal", 0):
                    return details  # type: ignore[no-any-return]
            return None

        wait_until(midway, 30, "the resync to be under way")
        assert open_fault(proc, "blocksDegraded", "drive 2 on node 1"), faults(proc, "all")
        proc.kill()
        # Killed mid-resync: the job is still running in the store, with its progress.
        shown = json.loads(sealbox_cli("status", "--data-dir", str(proc.data_dir), "--json"))
        resync = [j for j in shown["driveJobs"] if j["resultType"] == "DriveResync"]
        assert resync and 0 < resync[0]["details"]["chunksDone"] < \
            resync[0]["details"]["chunksTotal"]
        assert resync[0]["params"]["driveID"] == 2
        assert "DriveResync" in sealbox_cli("status", "--data-dir", str(proc.data_dir))
        proc.start()
        wait_until(lambda: not open_fault(proc, "blocksDegraded", ""), 60,
                   "the resumed resync to re-protect every chunk")
        jobs = proc.rpc("ListAsyncResults", {"asyncResultTypes": ["DriveResync"]})
        assert all(j["completed"] and j["success"] for j in jobs["result"]["asyncHandles"]), jobs
        assert read_back(proc, "big", tmp_path / "back.img") == data
    finally:
        proc.stop()


def test_drive_insert_refusals(cluster: SealboxProcess) -> None:
    import subprocess
    import sys

    def insert(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sealbox.cli", "drive", "insert", "--data-dir",
             str(cluster.data_dir), *args], capture_output=True, text=True, timeout=60)

    out = insert("--node", "99")
    assert out.returncode != 0 and "node 99 does not exist" in out.stderr
    out = insert("--node", "1", "--size", "1MiB")
    assert out.returncode != 0 and "at least 64MiB" in out.stderr
    out = insert("--node", "2", "--size", "64MiB", "--role", "slice", "--json")
    assert out.returncode == 0, out.stderr
    new = json.loads(out.stdout)
    assert drive(cluster, new["driveID"])["type"] == "volume"
    assert drive(cluster, new["driveID"])["status"] == "available"
    assert Path(new["path"]).stat().st_size == 64 * MIB


def test_a_truncated_drive_fails_and_is_re_protected(cluster: SealboxProcess,
                                                     tmp_path: Path) -> None:
    """I/O past the end of a shrunken drive file fails: the drive is failed, its chunks get
    their second copy back, and once re-protected it is put in available."""
    sf = cluster.element()
    account = sf.add_account(username="trunc").account_id
    sf.create_volume(name="trunc", account_id=account, total_size=24 * MIB)
    data = write_random(cluster, "trunc", tmp_path / "t.img", 24 * MIB)
    victim = drive(cluster, 6)  # node 2, slot 2
    assert victim["type"] == "block" and victim["status"] == "active"
    os.truncate(drive_path(cluster, 2, 2), 4 * MIB)
    wait_until(lambda: [f for f in ever_raised(cluster, "driveFailed") if f["driveID"] == 6],
               20, "driveFailed for the truncated drive")
    wait_until(lambda: drive(cluster, 6)["status"] == "available", 30,
               "the truncated drive, re-protected, to be available")
    assert not open_fault(cluster, "blocksDegraded", "")
    assert read_back(cluster, "trunc", tmp_path / "t2.img") == data
    handle = sf.add_drives([NewDrive(drive_id=6)]).async_handle  # formatted anew
    wait_job(cluster, handle)
    assert drive(cluster, 6)["status"] == "active"
    assert read_back(cluster, "trunc", tmp_path / "t3.img") == data
