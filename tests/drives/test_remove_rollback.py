"""A removal that cannot finish puts back the drives it has not drained: they are ``active``
again, the async result carries the error, and nothing stays ``removing`` — whether a drive
fails while the job runs or while sealbox is down after a ``kill -9`` mid-removal (the
resumed job judges the request again). A killed removal with nothing in its way resumes.

3 nodes with 2 drives each: slice drives 1, 3, 5 and block drives 2, 4, 6. RemoveDrives
[2, 3] is fine until slice drive 5 fails: the metadata would then be left on node 1 only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.drives.helpers import (
    MIB,
    drive,
    drive_path,
    drives,
    ever_raised,
    read_back,
    sealbox_cli,
    wait_job,
    write_random,
)
from tests.support.proc import SealboxProcess, wait_until


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SealboxProcess]:
    # A pause after each batch of 32 chunks a removal moves: the test acts midway.
    proc = SealboxProcess(tmp_path / "data", drive_size="128MiB", nodes=3,
                          extra=["--drives-per-node", "2", "--monitor-interval", "0.2"],
                          env={"SEALBOX_TEST_REMOVAL_STEP_DELAY": "2.0"}).start()
    yield proc
    proc.stop()


def _with_data(cluster: SealboxProcess, tmp_path: Path) -> bytes:
    sf = cluster.element()
    account = sf.add_account(username="rb").account_id
    sf.create_volume(name="rb", account_id=account, total_size=96 * MIB)
    return write_random(cluster, "rb", tmp_path / "in.img", 96 * MIB)


def _midway(cluster: SealboxProcess, some_left: bool = True) -> dict[str, Any] | None:
    """The running removal's progress once it has moved chunks of its first drive (some,
    not all, if ``some_left``), before that drive is out."""
    jobs = cluster.rpc("ListAsyncResults", {"asyncResultTypes": ["DriveRemoval"]})
    for job in jobs["result"]["asyncHandles"]:
        details: dict[str, Any] = job["data"]
        moved, total = details.get("chunksMoved", 0), details.get("chunksTotal", 0)
        if not job["completed"] and details.get("drivesRemoved") == 0 and \
                moved > 0 and (moved < total or not some_left):
            return details
    return None


def _failed_job(cluster: SealboxProcess, handle: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        res: dict[str, Any] = cluster.rpc(
            "GetAsyncResult", {"asyncHandle": handle, "keepResult": True})["result"]
        return res if res["status"] == "complete" else None

    result: dict[str, Any] = wait_until(done, 60, "the removal to end")
    assert "error" in result, result
    return result


def _statuses(cluster: SealboxProcess) -> dict[int, str]:
    return {d["driveID"]: d["status"] for d in drives(cluster)}


def test_a_drive_failing_during_a_removal_puts_the_rest_back(
        cluster: SealboxProcess, tmp_path: Path) -> None:
    data = _with_data(cluster, tmp_path)
    handle = cluster.element().remove_drives(drives=[2, 3]).async_handle
    wait_until(lambda: _midway(cluster), 30, "drive 2 to be half drained")
    drive_path(cluster, 3, 0).unlink()  # slice drive 5 dies
    wait_until(lambda: drive(cluster, 5)["status"] == "failed", 10, "drive 5 to be failed")
    assert _midway(cluster), "the job reached drive 3 before drive 5 failed"

    result = _failed_job(cluster, handle)
    assert result["resultType"] == "DriveRemoval"
    assert result["error"]["name"] == "xNotEnoughSpace"
    assert "Drives [3] cannot be removed" in result["error"]["message"]
    assert "on node(s) [1] only" in result["error"]["message"]
    # Drive 2 was drained before: it is out. Drive 3 was not: it serves again.
    assert _statuses(cluster) == {1: "active", 2: "available", 3: "active", 4: "active",
                                  5: "failed", 6: "active"}
    assert read_back(cluster, "rb", tmp_path / "back.img") == data
    assert not ever_raised(cluster, "blocksDegraded")
    cluster.restart()
    assert _statuses(cluster)[3] == "active"
    assert read_back(cluster, "rb", tmp_path / "back2.img") == data


def test_kill_9_mid_removal_then_a_failure_while_down_rolls_it_back(
        cluster: SealboxProcess, tmp_path: Path) -> None:
    data = _with_data(cluster, tmp_path)
    handle = cluster.element().remove_drives(drives=[2, 3]).async_handle
    wait_until(lambda: _midway(cluster), 30, "drive 2 to be half drained")
    cluster.kill()
    shown = json.loads(sealbox_cli("status", "--data-dir", str(cluster.data_dir), "--json"))
    (job,) = [j for j in shown["driveJobs"] if j["resultType"] == "DriveRemoval"]
    assert job["params"]["driveIDs"] == [2, 3] and job["details"]["chunksMoved"] > 0
    drive_path(cluster, 3, 0).unlink()  # slice drive 5 died while sealbox was down

    cluster.start()  # drive 5 is failed at start-up; the removal resumes, and stops
    result = _failed_job(cluster, handle)
    assert result["error"]["name"] == "xNotEnoughSpace"
    assert "Drives [2, 3] cannot be removed" in result["error"]["message"]
    assert _statuses(cluster) == {1: "active", 2: "active", 3: "active", 4: "active",
                                  5: "failed", 6: "active"}
    assert read_back(cluster, "rb", tmp_path / "back.img") == data
    assert not ever_raised(cluster, "blocksDegraded")

    # Drive 2 alone can go; killed before it is out (it holds one batch now, so the job
    # may be in the pause after it), its removal resumes at the next start.
    handle = cluster.element().remove_drives(drives=[2]).async_handle
    wait_until(lambda: _midway(cluster, some_left=False), 30, "drive 2 to be drained again")
    cluster.kill()
    cluster.start()
    assert wait_job(cluster, handle)["result"]["drives"] == [
        {"driveID": 2, "status": "available"}]
    assert "removing" not in _statuses(cluster).values()
    assert read_back(cluster, "rb", tmp_path / "back2.img") == data
    assert not ever_raised(cluster, "blocksDegraded")
