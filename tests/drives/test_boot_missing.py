"""Drives that die while the cluster is down: at the next start they are failed like drives
that die in service, and the volumes are served from the other copies at once, when they are
all on one node. When copies on several nodes are missing (a data directory not mounted yet
looks like that), no drive is failed: ``volumesOffline`` says why, and the cluster serves as
soon as they are back.
Through a real ``sealbox up`` process and ``nbdcopy``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from solidfire.models import NewDrive

from sealbox.storage.sed_format import DATA_OFFSET_SECTORS
from tests.drives.helpers import (
    MIB,
    drive,
    drives,
    ever_raised,
    faults,
    no_drive_faults,
    open_fault,
    read_back,
    sealbox_cli,
    wait_job,
    write_random,
)
from tests.support.proc import SealboxProcess, wait_until


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SealboxProcess]:
    proc = SealboxProcess(tmp_path / "data", nodes=3, extra=[
        "--drives-per-node", "3", "--monitor-interval", "1"]).start()
    yield proc
    proc.stop()


def _volume(cluster: SealboxProcess, tmp_path: Path) -> bytes:
    sf = cluster.element()
    account = sf.add_account(username="boot").account_id
    sf.create_volume(name="v", account_id=account, total_size=16 * MIB)
    return write_random(cluster, "v", tmp_path / "in.img", 16 * MIB)


def _scribble_drive_header(path: Path) -> None:
    """Garbage over the sealbox drive header inside the self-encrypting drive: the drive
    still powers on, but its header no longer decrypts to anything."""
    with open(path, "r+b") as f:
        f.seek(DATA_OFFSET_SECTORS * 4096)
        f.write(os.urandom(2 * 4096))
        os.fsync(f.fileno())


def test_drives_lost_while_down_are_failed_and_the_volumes_served(
        cluster: SealboxProcess, tmp_path: Path) -> None:
    data = _volume(cluster, tmp_path)
    slice2 = next(d for d in drives(cluster) if d["nodeID"] == 2 and d["type"] == "volume")
    assert drive(cluster, 2)["nodeID"] == 1 and drive(cluster, 2)["type"] == "block"
    cluster.stop()
    (cluster.data_dir / "drives" / "node1" / "drive1.img").unlink()  # block drive 2
    _scribble_drive_header(cluster.data_dir / "drives" / "node2" / "drive0.img")
    cluster.start()

    # Served at once, from the surviving copies.
    assert read_back(cluster, "v", tmp_path / "out.img") == data
    # (The slice drive's fault may already be resolved: re-protecting metadata is quick.)
    for drive_id, why in ((2, "No such file"), (slice2["driveID"], "header")):
        fault = wait_until(lambda i=drive_id: next(
            (f for f in ever_raised(cluster, "driveFailed") if f["driveID"] == i), None),
            20, f"driveFailed for drive {drive_id}")
        assert "could not be opened at start-up" in fault["details"] and why in fault["details"]
    assert drive(cluster, 2)["status"] == "failed"
    assert "could not be opened" in drive(cluster, 2)["driveFailureDetail"]
    assert not ever_raised(cluster, "volumesOffline")
    wait_until(lambda: open_fault(cluster, "sliceServiceUnhealthy", "node 2"), 20,
               "sliceServiceUnhealthy for node 2")
    # Re-protected: the slice drive's file is still there, so it comes back as available;
    # the seed's recovery (AddDrives) then clears every fault.
    wait_until(lambda: not open_fault(cluster, "blocksDegraded", ""), 60, "re-protection")
    wait_until(lambda: drive(cluster, slice2["driveID"])["status"] == "available", 30,
               "the failed slice drive to become available")
    handle = cluster.element().add_drives([NewDrive(drive_id=slice2["driveID"])]).async_handle
    wait_job(cluster, handle)
    handle = cluster.element().remove_drives([2]).async_handle  # the pulled drive is forgotten
    wait_job(cluster, handle)
    wait_until(lambda: no_drive_faults(cluster), 30, "every drive fault to resolve")
    cluster.restart()
    assert read_back(cluster, "v", tmp_path / "out2.img") == data


@pytest.mark.parametrize("nodes", [(2, 3), (1, 2, 3)], ids=["two-nodes", "every-drive"])
def test_drives_missing_on_several_nodes_fail_none_and_recover_by_themselves(
        cluster: SealboxProcess, tmp_path: Path, nodes: tuple[int, ...]) -> None:
    """Copies on more than one node missing: failing them could lose the data (and a
    filesystem not mounted yet looks just like this), so nothing is failed."""
    data = _volume(cluster, tmp_path)
    cluster.stop()
    moved = {n: tmp_path / f"unmounted{n}" for n in nodes}
    for n, away in moved.items():
        (cluster.data_dir / "drives" / f"node{n}").rename(away)
    cluster.start()

    fault = wait_until(lambda: open_fault(cluster, "volumesOffline", "could not be opened"), 20,
                       "volumesOffline")
    assert fault["severity"] == "error"
    gone = sorted(d["driveID"] for d in drives(cluster) if d["nodeID"] in nodes)
    assert sorted(fault["driveIDs"]) == gone
    assert {d["status"] for d in drives(cluster)} == {"active"}  # nothing failed
    assert not ever_raised(cluster, "driveFailed")
    added = None
    if len(nodes) < 3:  # a disk added meanwhile is taken in when the volumes open
        out = sealbox_cli("drive", "insert", "--data-dir", str(cluster.data_dir), "--node",
                          "1", "--size", "64MiB", "--json")
        added = json.loads(out)["driveID"]
        wait_job(cluster, cluster.element().add_drives([NewDrive(drive_id=added)]).async_handle)

    for n, away in moved.items():
        away.rename(cluster.data_dir / "drives" / f"node{n}")
    wait_until(lambda: not open_fault(cluster, "volumesOffline", ""), 60,
               "volumesOffline to resolve by itself")
    assert read_back(cluster, "v", tmp_path / "out.img") == data
    assert not [f for f in faults(cluster) if f["code"] == "driveFailed"]
    assert {d["status"] for d in drives(cluster)} == {"active"}
    if added is not None:
        assert drive(cluster, added)["status"] == "active"
        cluster.restart()  # its record and the volume metadata agree: it opens as before
        assert read_back(cluster, "v", tmp_path / "out2.img") == data
        assert not open_fault(cluster, "volumesOffline", "")
