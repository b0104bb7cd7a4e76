"""The seed's first recovery scenario: the cluster boots while its key server is down (or no
longer has the key) — kmipServerFault, drives locked, volumes not served, the API answering —
and recovers by itself when the key server is back."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealbox.kms.testing import RunningKms
from tests.ekm.rekey_support import kms_client, provider, read_volume, rekey, trust, write_volume
from tests.support.proc import SealboxProcess, wait_until


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealboxProcess]:
    proc = SealboxProcess(tmp_path_factory.mktemp("boot") / "data", nodes=2, extra=[
        "--drives-per-node", "2", "--unlock-retry-max", "1", "--kmip-timeout", "2",
        "--key-check-interval", "1"]).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def external(cluster: SealboxProcess, kms: RunningKms) -> dict[str, Any]:
    sf = cluster.element()
    cert = trust(sf, kms)
    pid = provider(sf, kms, cert, "boot")
    rekey(cluster, {"keyManagementType": "External", "keyProviderID": pid})
    return {"cert": cert, "pid": pid}


def _faults(cluster: SealboxProcess, which: str = "current") -> list[dict[str, Any]]:
    faults: list[dict[str, Any]] = cluster.rpc(
        "ListClusterFaults", {"faultTypes": which})["result"]["faults"]
    return [f for f in faults if f["code"] == "kmipServerFault"]


def _nbd_refused(cluster: SealboxProcess, name: str) -> str:
    out = subprocess.run(["qemu-img", "info", f"nbd://127.0.0.1:{cluster.nbd_port}/{name}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    return out.stderr


def test_boot_with_key_server_down_then_recovery(
        cluster: SealboxProcess, kms: RunningKms, external: dict[str, Any],
        tmp_path: Path) -> None:
    data = write_volume(cluster, "locked", tmp_path)
    kms.stop()
    cluster.restart()
    fault = wait_until(lambda: [f for f in _faults(cluster) if f["severity"] == "error"], 30,
                       "kmipServerFault")[0]
    assert fault["resolvedDate"] == ""
    assert f"key provider {external['pid']}" in fault["details"]
    assert "refused" in fault["details"].lower() and "127.0.0.1" in fault["details"]
    refused = _nbd_refused(cluster, "locked")
    assert "locked" in refused and "xKmipConnectionRefused" in refused
    told = refused.split("server reported:", 1)[1]  # what sealbox sent the client
    assert "ListClusterFaults" in told and "127.0.0.1" not in told  # NBD has no auth
    # The API keeps answering, so the admin can look and fix the configuration.
    info = cluster.rpc("GetSoftwareEncryptionAtRestInfo")["result"]
    assert info["masterKeyInfo"]["keyManagementType"] == "external"
    assert cluster.rpc("ListKeyServersKmip")["result"]["kmipKeyServers"]
    err = cluster.rpc("RekeySoftwareEncryptionAtRestMasterKey",
                      {"keyManagementType": "Internal"})["error"]
    assert err["name"] == "xAPINotPermitted" and "locked" in err["message"]

    kms.start()
    wait_until(lambda: not _faults(cluster), 30, "the fault to resolve by itself")
    assert fault["clusterFaultID"] in [f["clusterFaultID"] for f in _faults(cluster, "resolved")]
    assert read_volume(cluster, "locked", tmp_path) == data


def test_key_revoked_out_of_band_warns_while_serving(
        cluster: SealboxProcess, kms: RunningKms, external: dict[str, Any],
        tmp_path: Path) -> None:
    data = write_volume(cluster, "revoked", tmp_path)
    key_id = cluster.rpc("GetSoftwareEncryptionAtRestInfo")["result"]["masterKeyInfo"]["keyID"]
    with kms_client(cluster, kms, external["cert"]) as keys:
        [uid] = keys.locate(name=f"sealbox-mk-{key_id}")
        keys.revoke(uid)
    fault = wait_until(lambda: [f for f in _faults(cluster) if f["severity"] == "warning"],
                       30, "the key-state warning")[0]
    assert key_id in fault["details"] and "rekey" in fault["details"].lower()
    assert read_volume(cluster, "revoked", tmp_path) == data  # still served from memory
    rekey(cluster, {"keyManagementType": "External", "keyProviderID": external["pid"]})
    wait_until(lambda: not _faults(cluster), 30, "the warning to resolve after the rekey")
    assert read_volume(cluster, "revoked", tmp_path) == data


def test_boot_with_key_destroyed_names_the_reason(
        cluster: SealboxProcess, kms: RunningKms, external: dict[str, Any],
        tmp_path: Path) -> None:
    write_volume(cluster, "doomed", tmp_path)
    key_id = cluster.rpc("GetSoftwareEncryptionAtRestInfo")["result"]["masterKeyInfo"]["keyID"]
    with kms_client(cluster, kms, external["cert"]) as keys:
        [uid] = keys.locate(name=f"sealbox-mk-{key_id}")
        keys.revoke(uid)
        keys.destroy(uid)
    cluster.restart()
    fault = wait_until(lambda: [f for f in _faults(cluster) if f["severity"] == "error"],
                       30, "kmipServerFault")[0]
    assert key_id in fault["details"]
    assert "not found" in fault["details"].lower() or "ITEM_NOT_FOUND" in fault["details"]
    assert "locked" in _nbd_refused(cluster, "doomed")
