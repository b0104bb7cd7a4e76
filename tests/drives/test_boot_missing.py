"""Drives that die while the cluster is down: at the next start they are failed like drives
that die in service, and the volumes are served from the other copies at once, when that
provably loses nothing. Otherwise (both slice drives that hold the volume metadata missing,
copies on two nodes missing, a data directory not mounted yet) no drive is failed:
``volumesOffline`` says why, and the cluster serves as soon as they are back.
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


def test_block_drives_lost_while_down_are_failed_and_the_volumes_served(
        cluster: SealboxProcess, tmp_path: Path) -> None:
    data = _volume(cluster, tmp_path)
    node1 = {d["slot"]: d for d in drives(cluster) if d["nodeID"] == 1}
    assert node1[1]["type"] == node1[2]["type"] == "block"
    cluster.stop()
    (cluster.data_dir / "drives" / "node1" / "drive1.img").unlink()
    _scribble_drive_header(cluster.data_dir / "drives" / "node1" / "drive2.img")
    cluster.start()

    # Served at once, from the surviving copies.
    assert read_back(cluster, "v", tmp_path / "out.img") == data
    # (Raised before the API answered; the scribbled drive's may be resolved already, as it
    # becomes available once its data is re-protected.)
    for slot, why in ((1, "No such file"), (2, "header")):
        drive_id = node1[slot]["driveID"]
        fault = next((f for f in ever_raised(cluster, "driveFailed")
                      if f["driveID"] == drive_id), None)
        assert fault is not None, faults(cluster, "all")
        assert "could not be opened at start-up" in fault["details"] and why in fault["details"]
    assert drive(cluster, node1[1]["driveID"])["status"] == "failed"  # its file is gone
    assert not ever_raised(cluster, "volumesOffline")
    # Re-protected from the other copies; the one whose file is there comes back available
    # and AddDrives takes it in again, the other is forgotten: every fault resolves.
    wait_until(lambda: not open_fault(cluster, "blocksDegraded", ""), 60, "re-protection")
    scribbled = node1[2]["driveID"]
    wait_until(lambda: drive(cluster, scribbled)["status"] == "available", 30,
               "the scribbled drive to become available")
    wait_job(cluster, cluster.element().add_drives([NewDrive(drive_id=scribbled)]).async_handle)
    wait_job(cluster, cluster.element().remove_drives([node1[1]["driveID"]]).async_handle)
    wait_until(lambda: no_drive_faults(cluster), 30, "every drive fault to resolve")
    cluster.restart()
    assert read_back(cluster, "v", tmp_path / "out2.img") == data


def _mirrors(cluster: SealboxProcess) -> list[int]:
    """The slice drives recorded as holding the current volume metadata."""
    record = cluster.data_dir / "metadata-mirrors.json"
    assert record.stat().st_mode & 0o777 == 0o600
    mirrors: list[int] = json.loads(record.read_text())["mirrors"]
    return mirrors


def test_a_metadata_slice_drive_lost_while_down_is_failed_and_the_volumes_served(
        cluster: SealboxProcess, tmp_path: Path) -> None:
    """The slice drives that hold every metadata change are recorded outside them, so with
    one of them gone the other's copy is known to be current."""
    data = _volume(cluster, tmp_path)
    slices = {d["nodeID"]: d["driveID"] for d in drives(cluster) if d["type"] == "volume"}
    assert _mirrors(cluster) == [slices[1], slices[2]]
    cluster.stop()
    (cluster.data_dir / "drives" / "node1" / "drive0.img").unlink()
    cluster.start()

    assert read_back(cluster, "v", tmp_path / "out.img") == data
    fault = next((f for f in ever_raised(cluster, "driveFailed")
                  if f["driveID"] == slices[1]), None)
    assert fault is not None, faults(cluster, "all")
    assert "could not be opened at start-up" in fault["details"]
    assert drive(cluster, slices[1])["status"] == "failed"
    assert not ever_raised(cluster, "volumesOffline")
    # The metadata is kept on two nodes again, and that is recorded: the next start, with
    # the lost drive still gone, reads it from there and finds what was written since.
    wait_until(lambda: _mirrors(cluster) == [slices[2], slices[3]], 30,
               "the metadata to be mirrored on node 3")
    sf = cluster.element()
    sf.create_volume(name="w", account_id=sf.list_accounts().accounts[0].account_id,
                     total_size=16 * MIB)
    later = write_random(cluster, "w", tmp_path / "in2.img", 16 * MIB)
    cluster.restart()
    assert read_back(cluster, "w", tmp_path / "out2.img") == later
    assert read_back(cluster, "v", tmp_path / "out3.img") == data
    assert not ever_raised(cluster, "volumesOffline")


def test_without_the_mirror_record_every_slice_drive_is_needed(
        cluster: SealboxProcess, tmp_path: Path) -> None:
    """A cluster whose metadata mirrors were never recorded (formatted by an older sealbox,
    or the record deleted) cannot tell an old copy from a current one: even a slice drive
    that never held the metadata keeps the volumes offline until it is back, and the first
    start with every slice drive records the mirrors."""
    data = _volume(cluster, tmp_path)
    mirrors = _mirrors(cluster)
    cluster.stop()
    (cluster.data_dir / "metadata-mirrors.json").unlink()
    away = tmp_path / "away.img"
    (cluster.data_dir / "drives" / "node3" / "drive0.img").rename(away)
    cluster.start()

    fault = wait_until(lambda: open_fault(cluster, "volumesOffline", "never recorded"), 20,
                       "volumesOffline")
    assert "slice drive(s)" in fault["details"]
    assert not ever_raised(cluster, "driveFailed")
    away.rename(cluster.data_dir / "drives" / "node3" / "drive0.img")
    wait_until(lambda: not open_fault(cluster, "volumesOffline", ""), 60,
               "volumesOffline to resolve by itself")
    assert read_back(cluster, "v", tmp_path / "out.img") == data
    assert _mirrors(cluster) == mirrors


@pytest.mark.parametrize("missing", [
    [(1, 0), (2, 0)],
    [(n, slot) for n in (2, 3) for slot in range(3)],
    [(n, slot) for n in (1, 2, 3) for slot in range(3)],
], ids=["the-metadata-slice-drives", "two-nodes", "every-drive"])
def test_drives_missing_that_could_hold_data_fail_none_and_recover_by_themselves(
        cluster: SealboxProcess, tmp_path: Path, missing: list[tuple[int, int]]) -> None:
    """Failing these could lose data (the slice drives that hold the current metadata are
    gone, and node 3's copy could be an old one; copies on two nodes are gone; a filesystem
    not mounted yet looks just like this), so nothing is failed, and the volumes are served
    when the drives are back."""
    data = _volume(cluster, tmp_path)
    cluster.stop()
    moved = {(n, slot): tmp_path / f"away-{n}-{slot}.img" for n, slot in missing}
    for (n, slot), away in moved.items():
        (cluster.data_dir / "drives" / f"node{n}" / f"drive{slot}.img").rename(away)
    cluster.start()

    fault = wait_until(lambda: open_fault(cluster, "volumesOffline", "could not be opened"), 20,
                       "volumesOffline")
    assert fault["severity"] == "error"
    if len(missing) == 2:
        assert "holding the current volume metadata" in fault["details"], fault
    gone = sorted(d["driveID"] for d in drives(cluster) if (d["nodeID"], d["slot"]) in moved)
    assert sorted(fault["driveIDs"]) == gone
    assert {d["status"] for d in drives(cluster)} == {"active"}  # nothing failed
    assert not ever_raised(cluster, "driveFailed")
    added = None
    if len(missing) == 6:  # a disk added meanwhile is taken in when the volumes open
        out = sealbox_cli("drive", "insert", "--data-dir", str(cluster.data_dir), "--node",
                          "1", "--size", "64MiB", "--json")
        added = json.loads(out)["driveID"]
        wait_job(cluster, cluster.element().add_drives([NewDrive(drive_id=added)]).async_handle)

    for (n, slot), away in moved.items():
        away.rename(cluster.data_dir / "drives" / f"node{n}" / f"drive{slot}.img")
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
