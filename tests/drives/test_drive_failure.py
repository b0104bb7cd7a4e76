"""Drive failures during a write storm through NBD, re-protection, AddDrives of the returned
and of a hot-plugged drive, against a real ``sealbox up`` with the official SDK and sfcli."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from solidfire.models import NewDrive

from tests.drives.helpers import (
    MIB,
    corrupt_header,
    drive,
    drive_path,
    drives,
    ever_raised,
    no_drive_faults,
    open_fault,
    read_back,
    run,
    sealbox_cli,
    sfcli,
    uri,
    wait_job,
    write_random,
)
from tests.support.contract import assert_complete
from tests.support.proc import SealboxProcess, wait_until

REGIONS, REGION = 8, 2 * MIB


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealboxProcess]:
    proc = SealboxProcess(tmp_path_factory.mktemp("drv") / "data", drive_size="128MiB",
                          extra=["--monitor-interval", "0.2"]).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def account(cluster: SealboxProcess) -> int:
    return int(cluster.element().add_account(username="drives").account_id)


class Storm:
    """Rounds of pattern writes through qemu-io; a round counts once qemu-io exits 0."""

    def __init__(self, cluster: SealboxProcess, name: str) -> None:
        self.uri = uri(cluster, name)
        self.acked: dict[int, int] = {}
        self.rounds = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pattern(self, rnd: int, region: int) -> int:
        return (rnd * 7 + region * 13) % 255 + 1

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                rnd = self.rounds + 1
                cmds = []
                for r in range(REGIONS):
                    cmds += ["-c", f"write -P {self._pattern(rnd, r)} {r * REGION} {REGION}"]
                run("qemu-io", "-f", "raw", self.uri, *cmds)
                self.acked = {r: self._pattern(rnd, r) for r in range(REGIONS)}
                self.rounds = rnd
        except BaseException as e:  # reported by stop()
            self.error = e

    def __enter__(self) -> Storm:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)
        assert self.error is None, self.error

    def verify(self) -> None:
        cmds = []
        for r, p in self.acked.items():
            cmds += ["-c", f"read -P {p} {r * REGION} {REGION}"]
        out = run("qemu-io", "-f", "raw", self.uri, *cmds)
        assert "Pattern verification failed" not in out


def test_failures_during_a_write_storm_then_add_drives(
        cluster: SealboxProcess, account: int, tmp_path: Path) -> None:
    sf = cluster.element()
    sf.create_volume(name="base", account_id=account, total_size=48 * MIB)
    sf.create_volume(name="storm", account_id=account, total_size=REGIONS * REGION)
    base = write_random(cluster, "base", tmp_path / "base.img", 48 * MIB)
    block = drive(cluster, 2)
    assert (block["nodeID"], block["slot"], block["type"]) == (1, 1, "block")
    slice_ = next(d for d in drives(cluster) if d["nodeID"] == 2 and d["type"] == "volume")
    with Storm(cluster, "storm") as storm:
        wait_until(lambda: storm.rounds >= 2, 60, "the storm to write")
        drive_path(cluster, 1, 1).unlink()  # pull a block drive
        fault = wait_until(lambda: open_fault(cluster, "driveFailed", "Drive 2 "), 20,
                           "driveFailed for the pulled block drive")
        assert "node 1" in fault["details"] and "missing" in fault["details"]
        assert fault["driveID"] == 2 and fault["nodeID"] == 1
        settled = storm.rounds
        wait_until(lambda: storm.rounds >= settled + 2, 60, "the storm to go on")
        assert read_back(cluster, "base", tmp_path / "mid.img") == base  # reads meanwhile
        corrupt_header(drive_path(cluster, 2, 0))  # a metadata drive's header goes bad
        wait_until(lambda: open_fault(cluster, "sliceServiceUnhealthy", "node 2"), 20,
                   "sliceServiceUnhealthy for node 2")
        settled = storm.rounds
        wait_until(lambda: storm.rounds >= settled + 2, 60, "the storm to go on")
        assert read_back(cluster, "base", tmp_path / "mid2.img") == base
    storm.verify()
    assert read_back(cluster, "base", tmp_path / "back.img") == base

    for code in ("blocksDegraded", "blockServiceUnhealthy"):
        raised = wait_until(lambda c=code: ever_raised(cluster, c), 20, code)
        assert any("drive 2 on node 1" in f["details"] for f in raised), raised
    slice_fault = open_fault(cluster, "sliceServiceUnhealthy", "node 2")
    assert slice_fault is not None and str(slice_["driveID"]) in slice_fault["details"]
    failed = [f for f in ever_raised(cluster, "driveFailed")
              if f["driveID"] == slice_["driveID"]]
    assert failed and "node 2" in failed[0]["details"] and "header" in failed[0]["details"]
    # The pulled block drive's data is re-protected; it stays failed (its file is gone).
    wait_until(lambda: not open_fault(cluster, "blocksDegraded", ""), 60, "re-protection")
    assert drive(cluster, 2)["status"] == "failed"
    assert "missing" in drive(cluster, 2)["driveFailureDetail"]
    # The slice drive's file is still there: once re-protected it is put in available.
    wait_until(lambda: drive(cluster, slice_["driveID"])["status"] == "available", 30,
               "the failed slice drive to become available")

    # Hot-plug a new block drive into node 1, then add both with the SDK.
    out = sealbox_cli("drive", "insert", "--data-dir", str(cluster.data_dir), "--node", "1",
                      "--size", "128MiB", "--json")
    new_id = json.loads(out)["driveID"]
    wait_until(lambda: open_fault(cluster, "driveAvailable", str(new_id)), 20, "driveAvailable")
    assert drive(cluster, new_id)["status"] == "available"
    handle = sf.add_drives([NewDrive(drive_id=slice_["driveID"]),
                            NewDrive(drive_id=new_id, type="block")]).async_handle
    assert wait_job(cluster, handle)["resultType"] == "DriveAdd"
    # The pulled drive is forgotten with sfcli (IDs sent as strings).
    env_home = cluster.data_dir.parent / "home"
    env_home.mkdir(exist_ok=True)
    removed = json.loads(sfcli(cluster, env_home, "drive", "remove", "--drives", "2"))
    assert_complete("RemoveDrives", removed["result"])
    wait_job(cluster, removed["result"]["asyncHandle"])
    wait_until(lambda: no_drive_faults(cluster), 30, "every drive fault to resolve")
    listed = json.loads(sfcli(cluster, env_home, "drive", "list"))["result"]
    assert_complete("ListDrives", listed)
    status = {d["driveID"]: d["status"] for d in listed["drives"]}
    assert status[slice_["driveID"]] == "active" and status[new_id] == "active"
    assert 2 not in status
    assert read_back(cluster, "base", tmp_path / "back2.img") == base
    storm.verify()
    cluster.restart()  # and everything still holds after a restart
    assert read_back(cluster, "base", tmp_path / "back3.img") == base
    storm.verify()
    assert no_drive_faults(cluster)
