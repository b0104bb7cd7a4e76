"""Hardware encryption at rest over the drive lifecycle, with a real PyKMIP key server, through
the SDK and sfcli: bad requests change nothing, SecureEraseDrives destroys the drive's
authentication key (AK) and its media key, AddDrives gives a drive a new AK, and a provider
holding AKs cannot be deleted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealbox.kmip.client import KeyState
from sealbox.kms.testing import RunningKms
from sealbox.storage.disk import Disk
from tests.drives.helpers import drive, drive_path, read_back, sfcli, wait_job, write_random
from tests.ekm.rekey_support import kms_client, provider, trust
from tests.support.proc import SealboxProcess, wait_until

MIB = 1 << 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealboxProcess]:
    proc = SealboxProcess(tmp_path_factory.mktemp("eardrives") / "data", nodes=2, extra=[
        "--drives-per-node", "3", "--unlock-retry-max", "1", "--kmip-timeout", "2"]).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def pid(cluster: SealboxProcess, kms: RunningKms) -> dict[str, Any]:
    sf = cluster.element()
    cert = trust(sf, kms, "sealbox-eardrives")
    return {"cert": cert, "pid": provider(sf, kms, cert, "eardrives")}


def _state(cluster: SealboxProcess) -> str:
    state: str = cluster.rpc("GetClusterInfo")["result"]["clusterInfo"]["encryptionAtRestState"]
    return state


def _error(cluster: SealboxProcess, method: str, params: dict[str, Any]) -> dict[str, Any]:
    env = cluster.rpc(method, params)
    assert "error" in env, env
    error: dict[str, Any] = env["error"]
    return error


def test_bad_requests_get_element_errors_and_change_nothing(
        cluster: SealboxProcess, pid: dict[str, Any]) -> None:
    empty = cluster.element().create_key_provider_kmip(key_provider_name="empty")
    empty_id = empty.kmip_key_provider.key_provider_id
    cases = [
        ({"keyProviderID": 999}, "xKeyProviderIDDoesNotExist", "999"),
        ({"keyProviderID": "abc"}, "xInvalidParameter", "keyProviderID"),
        ({"keyProviderID": empty_id}, "xAPINotPermitted", "no key servers"),
    ]
    for params, name, needle in cases:
        err = _error(cluster, "EnableEncryptionAtRest", params)
        assert err["name"] == name and needle in err["message"], err
        assert _state(cluster) == "disabled"
    assert cluster.rpc("DisableEncryptionAtRest")["result"] == {}  # already disabled: no-op
    assert _state(cluster) == "disabled"


def test_enable_through_sfcli_then_a_second_provider_is_refused(
        cluster: SealboxProcess, pid: dict[str, Any], tmp_path: Path) -> None:
    out = json.loads(sfcli(cluster, tmp_path, "cluster", "enableencryptionatrest",
                           "--keyproviderid", str(pid["pid"])))
    assert out["result"] == {}
    wait_until(lambda: _state(cluster) == "enabled", 60, "enabled")
    # Asking again for the same is a no-op; asking for internal keys meanwhile is refused.
    assert cluster.rpc("EnableEncryptionAtRest", {"keyProviderID": pid["pid"]})["result"] == {}
    err = _error(cluster, "EnableEncryptionAtRest", {})
    assert err["name"] == "xAPINotPermitted" and "disable it first" in err["message"]
    err = _error(cluster, "DeleteKeyProviderKmip", {"keyProviderID": pid["pid"]})
    assert err["name"] == "xAPINotPermitted", err
    assert "is active" in err["message"] and "hardwareEncryptionAtRest" in err["message"]


def test_secure_erase_destroys_the_ak_and_add_drives_gives_a_new_one(
        cluster: SealboxProcess, kms: RunningKms, pid: dict[str, Any], tmp_path: Path) -> None:
    sf = cluster.element()
    account = sf.add_account(username="ear").account_id
    sf.create_volume(name="ear", account_id=account, total_size=16 * MIB)
    data = write_random(cluster, "ear", tmp_path / "in.img", 16 * MIB)
    victim = drive(cluster, 3)  # node 1, slot 2: a block drive
    old_key = victim["keyID"]
    with kms_client(cluster, kms, pid["cert"]) as client:
        (old_uid,) = client.locate(name=f"sealbox-ak-{old_key}")
        wait_job(cluster, sf.remove_drives(drives=[3]).async_handle)
        assert drive(cluster, 3)["status"] == "available"
        wait_job(cluster, cluster.rpc("SecureEraseDrives", {"drives": [3]})["result"]
                 ["asyncHandle"])
        erased = drive(cluster, 3)
        assert erased["status"] == "available" and "keyID" not in erased
        assert client.locate(name=f"sealbox-ak-{old_key}") == []  # the AK is gone
        with Disk.open(drive_path(cluster, 1, 2)) as disk:
            assert not disk.locked  # a new media key, locking off: nothing old to unlock
            assert disk.sed is not None and disk.sed.mek_generation == 2

        wait_job(cluster, sf.add_drives(drives=[{"driveID": 3, "type": "block"}]).async_handle)
        added = drive(cluster, 3)
        assert added["status"] == "active" and added["keyID"] not in (None, old_key)
        assert added["keyProviderID"] == pid["pid"]
        (new_uid,) = client.locate(name=f"sealbox-ak-{added['keyID']}")
        assert client.get_attributes(new_uid).state is KeyState.ACTIVE
        assert new_uid != old_uid
        with Disk.open(drive_path(cluster, 1, 2)) as disk:
            assert disk.locked
            disk.unlock(client.get(new_uid))
    assert read_back(cluster, "ear", tmp_path / "out.img") == data
    cluster.restart()
    assert read_back(cluster, "ear", tmp_path / "out2.img") == data


def _security_faults(cluster: SealboxProcess, code: str) -> dict[int, dict[str, Any]]:
    faults = cluster.rpc("ListClusterFaults", {"faultTypes": "current"})["result"]["faults"]
    return {f["driveID"]: f for f in faults if f["code"] == code}


def test_switching_while_the_key_server_is_down_raises_drive_security_faults(
        cluster: SealboxProcess, kms: RunningKms, pid: dict[str, Any], tmp_path: Path) -> None:
    active = [d["driveID"] for d in cluster.rpc("ListDrives")["result"]["drives"]
              if d["status"] == "active"]
    kms.stop()
    try:
        assert cluster.rpc("DisableEncryptionAtRest")["result"] == {}
        faults = wait_until(lambda: (f := _security_faults(cluster, "disableDriveSecurityFailed"))
                            and len(f) == len(active) and f, 60, "disableDriveSecurityFailed")
        assert sorted(faults) == sorted(active)
        one = faults[active[0]]
        assert one["severity"] == "warning" and f"drive {active[0]}" in one["details"]
        assert _state(cluster) == "disabling"
        listed = {d["driveID"]: d for d in cluster.rpc("ListDrives")["result"]["drives"]}
        assert listed[active[0]]["driveSecurityFaultReason"] == "disableDriveSecurityFailed"
    finally:
        kms.start()
    wait_until(lambda: _state(cluster) == "disabled", 60, "disabled once the key server is back")
    assert not _security_faults(cluster, "disableDriveSecurityFailed")

    kms.stop()
    try:
        assert cluster.rpc("EnableEncryptionAtRest", {"keyProviderID": pid["pid"]})["result"] \
            == {}
        faults = wait_until(lambda: _security_faults(cluster, "enableDriveSecurityFailed"), 60,
                            "enableDriveSecurityFailed")
        assert "refused" in next(iter(faults.values()))["details"]
        assert _state(cluster) == "enabling"
    finally:
        kms.start()
    wait_until(lambda: _state(cluster) == "enabled", 60, "enabled once the key server is back")
    assert not _security_faults(cluster, "enableDriveSecurityFailed")
    assert all(d["driveSecurityFaultReason"] == "none"
               for d in cluster.rpc("ListDrives")["result"]["drives"])
    assert cluster.rpc("DisableEncryptionAtRest")["result"] == {}
    wait_until(lambda: _state(cluster) == "disabled", 60, "disabled")
