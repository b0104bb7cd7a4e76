"""The seed's recovery scenario on a two-node cluster: a metadata (slice) drive is marked
failed and put in the available state, ``sliceServiceUnhealthy`` is raised; AddDrives adds the
drive again, its metadata is resynchronised from the surviving copy, and the fault clears."""

from __future__ import annotations

from pathlib import Path

from solidfire.models import NewDrive

from tests.drives.helpers import (
    MIB,
    corrupt_header,
    drive,
    drive_path,
    no_drive_faults,
    open_fault,
    read_back,
    wait_job,
    write_random,
)
from tests.support.proc import SealboxProcess, wait_until


def test_slice_drive_failed_then_added_again(tmp_path: Path) -> None:
    proc = SealboxProcess(tmp_path / "data", drive_size="128MiB", nodes=2,
                          extra=["--monitor-interval", "0.2"]).start()
    try:
        sf = proc.element()
        account = sf.add_account(username="seed").account_id
        sf.create_volume(name="a", account_id=account, total_size=16 * MIB)
        a = write_random(proc, "a", tmp_path / "a.img", 16 * MIB)
        assert drive(proc, 1)["type"] == "volume" and drive(proc, 1)["nodeID"] == 1
        corrupt_header(drive_path(proc, 1, 0))
        fault = wait_until(lambda: open_fault(proc, "sliceServiceUnhealthy", "node 1"), 20,
                           "sliceServiceUnhealthy")
        assert fault["nodeID"] == 1 and fault["driveIDs"] == [1]
        wait_until(lambda: drive(proc, 1)["status"] == "available", 20, "drive 1 available")
        fault = open_fault(proc, "sliceServiceUnhealthy", "node 1")
        assert fault is not None and "node(s) [2]" in fault["details"]
        assert "AddDrives" in fault["details"]
        sf.create_volume(name="b", account_id=account, total_size=8 * MIB)  # one copy now
        b = write_random(proc, "b", tmp_path / "b.img", 8 * MIB)
        # A restart while degraded still serves the volumes from the surviving metadata.
        proc.restart()
        sf = proc.element()
        assert read_back(proc, "a", tmp_path / "a1.img") == a
        assert open_fault(proc, "sliceServiceUnhealthy", "node 1") is not None

        handle = sf.add_drives([NewDrive(drive_id=1)]).async_handle
        wait_job(proc, handle)
        wait_until(lambda: no_drive_faults(proc), 30, "sliceServiceUnhealthy to clear")
        assert drive(proc, 1)["status"] == "active"
        assert drive(proc, 1)["driveFailureDetail"] == ""
        proc.restart()
        assert no_drive_faults(proc)
        assert read_back(proc, "a", tmp_path / "a2.img") == a
        assert read_back(proc, "b", tmp_path / "b2.img") == b
    finally:
        proc.stop()
