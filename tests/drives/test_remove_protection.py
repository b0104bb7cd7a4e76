"""RemoveDrives judges the whole request before anything changes: drives that together would
leave the volume metadata or some data without two copies on two nodes are refused with
``xNotEnoughSpace`` naming them. AddDrives takes NewDrive objects, RemoveDrives and
SecureEraseDrives plain IDs. A drive left ``removing`` by a failed removal of an older sealbox
is active again after a restart. One 4-node cluster (drives 1, 4, 7, 10 are the slice
drives; 2, 3, 5, 6, 8, 9, 11, 12 the block drives)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from solidfire.common import ApiServerError
from solidfire.models import NewDrive

from tests.drives.helpers import MIB, drive, drives, read_back, wait_job, write_random
from tests.support.proc import SealboxProcess

SLICE_DRIVES = [1, 4, 7, 10]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealboxProcess]:
    proc = SealboxProcess(tmp_path_factory.mktemp("protect") / "data",
                          extra=["--monitor-interval", "0.2"]).start()
    yield proc
    proc.stop()


def _statuses(cluster: SealboxProcess) -> dict[int, str]:
    return {d["driveID"]: d["status"] for d in drives(cluster)}


def _removal_jobs(cluster: SealboxProcess) -> list[dict[str, Any]]:
    result = cluster.rpc("ListAsyncResults", {"asyncResultTypes": ["DriveRemoval"]})
    jobs: list[dict[str, Any]] = result["result"]["asyncHandles"]
    return jobs


def _mirrors(cluster: SealboxProcess) -> list[int]:
    mirrors: list[int] = json.loads(
        (cluster.data_dir / "metadata-mirrors.json").read_text())["mirrors"]
    return mirrors


def _refused(cluster: SealboxProcess, ids: list[Any]) -> dict[str, Any]:
    """RemoveDrives refused: the Element error, with nothing changed."""
    before, jobs, mirrors = _statuses(cluster), _removal_jobs(cluster), _mirrors(cluster)
    envelope = cluster.rpc("RemoveDrives", {"drives": ids})
    assert "error" in envelope, f"RemoveDrives {ids} was accepted: {envelope}"
    error: dict[str, Any] = envelope["error"]
    assert _statuses(cluster) == before
    assert _removal_jobs(cluster) == jobs  # no job was started
    assert _mirrors(cluster) == mirrors
    return error


def test_removing_every_slice_drive_is_refused_and_changes_nothing(
        cluster: SealboxProcess) -> None:
    error = _refused(cluster, SLICE_DRIVES)
    assert error["name"] == "xNotEnoughSpace" and error["code"] == 500
    assert "Drives [1, 4, 7, 10] cannot be removed" in error["message"]
    assert "volume metadata must keep two copies on two different nodes" in error["message"]
    assert "nothing was changed" in error["message"]
    # Three of the four would leave the metadata on one node (numeric strings, as sfcli
    # sends them): refused too.
    assert _refused(cluster, ["1", "4", "7"])["name"] == "xNotEnoughSpace"
    with pytest.raises(ApiServerError) as e:
        cluster.element().remove_drives(drives=SLICE_DRIVES)
    assert e.value.error_name == "xNotEnoughSpace"
    assert set(_statuses(cluster).values()) == {"active"}


def test_removing_the_block_drives_of_all_but_one_node_is_refused(
        cluster: SealboxProcess) -> None:
    error = _refused(cluster, [2, 3, 5, 6, 8, 9])
    assert error["name"] == "xNotEnoughSpace"
    assert "Drives [2, 3, 5, 6, 8, 9] cannot be removed" in error["message"]
    assert "every chunk of data must keep two copies" in error["message"]
    assert "on node(s) [4] only" in error["message"]
    assert set(_statuses(cluster).values()) == {"active"}


def test_a_removal_whose_data_finds_no_room_is_refused_up_front(
        cluster: SealboxProcess, tmp_path: Path) -> None:
    """160 MiB on 8 block drives of 62 slots: the 160 copies on nodes 1 and 2 do not fit in
    the 88 free slots of nodes 3 and 4."""
    sf = cluster.element()
    account = sf.add_account(username="room").account_id
    sf.create_volume(name="room", account_id=account, total_size=160 * MIB)
    data = write_random(cluster, "room", tmp_path / "r.img", 160 * MIB)
    error = _refused(cluster, [2, 3, 5, 6])
    assert error["name"] == "xNotEnoughSpace"
    assert "Drives [2, 3, 5, 6] cannot be removed: 160 chunk copies" in error["message"]
    assert "add block drives on other nodes first" in error["message"]
    assert set(_statuses(cluster).values()) == {"active"}
    assert read_back(cluster, "room", tmp_path / "back.img") == data


def test_add_drives_takes_objects_and_remove_drives_takes_ids(cluster: SealboxProcess) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sealbox.cli", "drive", "insert", "--data-dir",
         str(cluster.data_dir), "--node", "1", "--json"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    new = json.loads(out.stdout)["driveID"]
    assert drive(cluster, new)["status"] == "available"
    cases = [
        ("AddDrives", {"drives": [new]}, "drives[0]"),
        ("AddDrives", {"drives": [str(new)]}, "drives[0]"),
        ("AddDrives", {"drives": [{"driveID": new}, new]}, "drives[1]"),
        ("AddDrives", {"drives": [{"type": "block"}]}, "drives[0]"),
        ("RemoveDrives", {"drives": [{"driveID": 2}]}, "drives[0]"),
        ("RemoveDrives", {"drives": [2, True]}, "drives[1]"),
        ("SecureEraseDrives", {"drives": [{"driveID": new}]}, "drives[0]"),
    ]
    before = _statuses(cluster)
    for method, params, name in cases:
        error = cluster.rpc(method, params)["error"]
        assert error["name"] == "xInvalidParameter", (method, params, error)
        assert f"'{name}" in error["message"], (method, params, error)
    assert _statuses(cluster) == before
    message = cluster.rpc("AddDrives", {"drives": [new]})["error"]["message"]
    assert "expected an object with driveID" in message
    jobs = cluster.rpc("ListAsyncResults", {"asyncResultTypes": ["DriveAdd", "DriveErase"]})
    assert jobs["result"]["asyncHandles"] == []
    # As the Element API and SDK send it, it works.
    handle = cluster.element().add_drives([NewDrive(drive_id=new, type="block")]).async_handle
    wait_job(cluster, handle)
    assert drive(cluster, new)["status"] == "active"


def test_a_drive_left_removing_by_an_older_sealbox_is_active_after_a_restart(
        cluster: SealboxProcess) -> None:
    """The reported state: drive 10 ``removing`` while its removal job had ended with an
    error. A restart clears the flag (the drive never stopped serving); RemoveDrives then
    takes it, and it ends available."""
    from sealbox.store.sqlite import SqliteStore

    cluster.stop()
    store = SqliteStore(cluster.data_dir / "sealbox.db")
    try:
        with store.write() as txn:
            doc = txn.get("drives", 10)
            assert doc is not None and doc["status"] == "active"
            txn.put("drives", 10, {**doc, "removing": True})
            txn.put("asyncresults", txn.next_id("asyncresults"), {
                "resultType": "DriveRemoval", "status": "complete",
                "createTime": "2024-01-01T00:00:00Z", "lastUpdateTime": "2024-01-01T00:00:00Z",
                "params": {"driveIDs": [1, 4, 7, 10]}, "details": {},
                "error": {"code": 500, "name": "xVolumeDataUnavailable",
                          "message": "slice drive 10 holds the only copy of the volume "
                                     "metadata"}})
    finally:
        store.close()
    cluster.start()
    assert drive(cluster, 10)["status"] == "active"
    assert "removing" not in _statuses(cluster).values()
    wait_job(cluster, cluster.element().remove_drives(drives=[10]).async_handle)
    assert drive(cluster, 10)["status"] == "available"
    assert 10 not in _mirrors(cluster) and len(_mirrors(cluster)) == 2
