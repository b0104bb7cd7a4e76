"""Hardware encryption at rest with authentication keys on a real PyKMIP key server, through the
official SDK against a ``sealbox up`` process: the seed's step 3a and its second recovery
scenario ("recovering inaccessible or invalid authentication keys").

The tests of this module are one story and run in order: enable with a provider, boot with the
key server down, lose one slice drive's key out of band, recover with AddDrives, disable.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealbox.kmip.client import KeyState
from sealbox.kmip.provider import ProviderClient
from sealbox.kms.testing import RunningKms
from sealbox.secrets import Secret
from sealbox.storage.disk import Disk
from sealbox.storage.sed_errors import SedAuthenticationFailed, SedLocked
from tests.ekm.rekey_support import kms_client, provider, read_volume, trust, write_volume
from tests.support.contract import assert_complete
from tests.support.proc import SealboxProcess, wait_until


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealboxProcess]:
    proc = SealboxProcess(tmp_path_factory.mktemp("hwear") / "data", nodes=2, extra=[
        "--drives-per-node", "2", "--unlock-retry-max", "1", "--kmip-timeout", "2",
        "--monitor-interval", "1"]).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def setup(cluster: SealboxProcess, kms: RunningKms) -> dict[str, Any]:
    sf = cluster.element()
    cert = trust(sf, kms, "sealbox-hwear")
    return {"cert": cert, "pid": provider(sf, kms, cert, "hwear"), "data": {}}


@pytest.fixture
def keyserver(cluster: SealboxProcess, kms: RunningKms,
              setup: dict[str, Any]) -> Iterator[ProviderClient]:
    with kms_client(cluster, kms, setup["cert"]) as client:
        yield client


def _state(cluster: SealboxProcess) -> str:
    state: str = cluster.element().get_cluster_info().cluster_info.encryption_at_rest_state
    return state


def _drives(cluster: SealboxProcess) -> list[dict[str, Any]]:
    drives: list[dict[str, Any]] = cluster.rpc("ListDrives")["result"]["drives"]
    return drives


def _faults(cluster: SealboxProcess, code: str, which: str = "current") -> list[dict[str, Any]]:
    faults = cluster.rpc("ListClusterFaults", {"faultTypes": which})["result"]["faults"]
    return [f for f in faults if f["code"] == code]


def _security(cluster: SealboxProcess) -> dict[str, tuple[bool, bool]]:
    """(securityEnabled, securityLocked) of each drive by serial, as GetDriveConfig shows the
    drives' own state."""
    config = cluster.rpc("GetDriveConfig")["result"]["driveConfig"]
    assert_complete("GetDriveConfig", {"driveConfig": config})
    assert config["numTotalActual"] == config["numTotalExpected"] == 4
    return {d["serial"]: (d["securityEnabled"], d["securityLocked"]) for d in config["drives"]}


def _ak_uid(keyserver: ProviderClient, key_id: str) -> list[str]:
    return keyserver.locate(name=f"sealbox-ak-{key_id}")


def _drive_file(cluster: SealboxProcess, drive: dict[str, Any]) -> Path:
    return cluster.data_dir / "drives" / f"node{drive['nodeID']}" / f"drive{drive['slot']}.img"


def test_enable_with_a_provider_puts_one_active_ak_per_drive_on_the_key_server(
        cluster: SealboxProcess, setup: dict[str, Any], keyserver: ProviderClient) -> None:
    sf = cluster.element()
    assert _state(cluster) == "disabled"
    assert sf.get_encryption_at_rest_info().state == "disabled"
    result = cluster.rpc("EnableEncryptionAtRest", {"keyProviderID": setup["pid"]})
    assert result["result"] == {}
    assert _state(cluster) in ("enabling", "enabled")
    wait_until(lambda: _state(cluster) == "enabled", 60, "encryption at rest to be enabled")

    raw = cluster.rpc("GetEncryptionAtRestInfo")["result"]
    assert_complete("GetEncryptionAtRestInfo", raw)
    info = sf.get_encryption_at_rest_info()
    assert info.state == "enabled"
    key = info.authentication_key_info
    assert key.key_management_type == "external" and key.key_provider_id == setup["pid"]
    providers = sf.list_key_providers_kmip().kmip_key_providers
    assert next(p for p in providers
                if p.key_provider_id == setup["pid"]).key_provider_is_active

    drives = _drives(cluster)
    assert len(drives) == 4
    per_drive = {d["driveID"]: d for d in raw["drives"]}
    assert sorted(per_drive) == sorted(d["driveID"] for d in drives)
    assert all(d["securityEnabled"] and d["keyProviderID"] == setup["pid"]
               for d in per_drive.values())
    key_ids = set()
    for d in drives:
        assert d["keyProviderID"] == setup["pid"] and d["driveSecurityFaultReason"] == "none"
        uids = _ak_uid(keyserver, d["keyID"])
        assert len(uids) == 1, d
        assert keyserver.get_attributes(uids[0]).state is KeyState.ACTIVE
        ak = keyserver.get(uids[0])
        assert len(ak.reveal()) == 32
        key_ids.add(d["keyID"])
        # The drive file stays unreadable without its AK: powered on, it is locked.
        with Disk.open(_drive_file(cluster, d)) as disk:
            assert disk.locked
            with pytest.raises(SedLocked):
                disk.drive()
            with pytest.raises(SedAuthenticationFailed):
                disk.unlock(Secret(os.urandom(32)))
            disk.unlock(ak)
            assert disk.drive().uuid is not None
    assert len(key_ids) == 4  # one key per drive
    # The drives themselves: locking enabled, and unlocked (in service).
    assert set(_security(cluster).values()) == {(True, False)}
    setup["keyIDs"] = key_ids


def test_boot_with_the_key_server_down_keeps_drives_locked_then_recovers(
        cluster: SealboxProcess, kms: RunningKms, setup: dict[str, Any],
        tmp_path: Path) -> None:
    data = write_volume(cluster, "sed", tmp_path)
    setup["data"]["sed"] = data
    kms.stop()
    try:
        cluster.restart()
        fault = wait_until(lambda: _faults(cluster, "kmipServerFault"), 30, "kmipServerFault")[0]
        assert fault["severity"] == "error"
        assert "self-encrypting drives" in fault["details"]
        assert f"key provider(s) [{setup['pid']}]" in fault["details"]
        out = subprocess.run(
            ["qemu-img", "info", f"nbd://127.0.0.1:{cluster.nbd_port}/sed"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "locked" in out.stderr
        told = out.stderr.split("server reported:", 1)[1]  # what sealbox sent the client
        assert "xAuthenticationKeyUnavailable" in told and "ListClusterFaults" in told
        assert "127.0.0.1" not in told  # NBD has no authentication: no key server addresses
        assert _state(cluster) == "enabled"  # the API keeps answering
        # Every drive is powered on and waits, locked, for its key.
        assert set(_security(cluster).values()) == {(True, True)}
    finally:
        kms.start()
    wait_until(lambda: not _faults(cluster, "kmipServerFault"), 60, "the fault to resolve")
    assert set(_security(cluster).values()) == {(True, False)}
    assert read_volume(cluster, "sed", tmp_path) == data


def test_a_slice_drive_whose_ak_was_destroyed_is_failed_then_recovered_by_add_drives(
        cluster: SealboxProcess, setup: dict[str, Any], keyserver: ProviderClient,
        tmp_path: Path) -> None:
    sf = cluster.element()
    victim = next(d for d in _drives(cluster) if d["type"] == "volume" and d["nodeID"] == 2)
    uid = _ak_uid(keyserver, victim["keyID"])[0]
    keyserver.revoke(uid)
    keyserver.destroy(uid)
    cluster.restart()

    def failed() -> dict[str, Any] | None:
        d = next(x for x in _drives(cluster) if x["driveID"] == victim["driveID"])
        return d if d["status"] in ("failed", "available") else None

    wait_until(failed, 60, "the drive to be failed")
    # Failed, then (its data re-protected at once: metadata is small) available for AddDrives;
    # the driveFailed fault lasts while it is failed, so look among resolved faults too.
    drive_fault = wait_until(lambda: _faults(cluster, "driveFailed", "all"), 30,
                             "driveFailed")[0]
    assert drive_fault["driveID"] == victim["driveID"]
    assert "authentication key" in drive_fault["details"]
    wait_until(lambda: _faults(cluster, "sliceServiceUnhealthy"), 30, "sliceServiceUnhealthy")
    assert read_volume(cluster, "sed", tmp_path) == setup["data"]["sed"]  # the other copy

    wait_until(lambda: failed() and failed()["status"] == "available", 60,  # type: ignore[index]
               "the failed drive to become available")
    handle = sf.add_drives(drives=[{"driveID": victim["driveID"]}]).async_handle
    done = wait_until(lambda: (r := sf.get_async_result(async_handle=handle, keep_result=True))
                      ["status"] == "complete" and r, 120, "AddDrives")
    assert "error" not in done, done
    wait_until(lambda: not _faults(cluster, "driveFailed")
               and not _faults(cluster, "sliceServiceUnhealthy"), 120, "the faults to resolve")
    again = next(x for x in _drives(cluster) if x["driveID"] == victim["driveID"])
    assert again["status"] == "active" and again["keyID"] not in setup["keyIDs"]
    assert _ak_uid(keyserver, again["keyID"])  # a new AK on the key server
    assert read_volume(cluster, "sed", tmp_path) == setup["data"]["sed"]
    cluster.restart()  # the new key unlocks the drive at the next boot
    assert read_volume(cluster, "sed", tmp_path) == setup["data"]["sed"]
    assert not _faults(cluster, "kmipServerFault")


def test_disable_destroys_the_aks_and_keeps_the_data(
        cluster: SealboxProcess, setup: dict[str, Any], keyserver: ProviderClient,
        tmp_path: Path) -> None:
    sf = cluster.element()
    key_ids = [d["keyID"] for d in _drives(cluster)]
    assert cluster.rpc("DisableEncryptionAtRest")["result"] == {}
    wait_until(lambda: _state(cluster) == "disabled", 60, "encryption at rest to be disabled")
    assert sf.get_encryption_at_rest_info().state == "disabled"
    assert not any(d["securityEnabled"] or "keyID" in d
                   for d in cluster.rpc("GetEncryptionAtRestInfo")["result"]["drives"])
    for key_id in key_ids:
        assert _ak_uid(keyserver, key_id) == []
    assert set(_security(cluster).values()) == {(False, False)}
    for d in _drives(cluster):
        assert "keyID" not in d and "keyProviderID" not in d
        with Disk.open(_drive_file(cluster, d)) as disk:
            assert not disk.locked
    providers = sf.list_key_providers_kmip().kmip_key_providers
    assert not next(p for p in providers
                    if p.key_provider_id == setup["pid"]).key_provider_is_active
    assert read_volume(cluster, "sed", tmp_path) == setup["data"]["sed"]
    cluster.restart()
    assert read_volume(cluster, "sed", tmp_path) == setup["data"]["sed"]
