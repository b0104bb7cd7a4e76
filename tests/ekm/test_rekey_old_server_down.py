"""A rekey away from a key server that is down: the switch to the new master key is committed,
so decommissioning the old key (Revoke, Destroy on the old key server) must not hold the cluster
hostage. A real sealbox process, a real PyKMIP key server (stopped and started again), mutual
TLS, no mocks: the fault and the job's reason appear, the job completes within its bound with
the old key marked pending, another rekey is accepted, the old provider cannot be deleted while
its key is pending (and says why), and once the key server is back the old key is destroyed,
the fault resolved and the provider deletable — across restarts too, or given up by clearing
the fault."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealbox.kms.testing import RunningKms
from tests.ekm.rekey_support import kms_client, provider, read_volume, rekey, trust, write_volume
from tests.support.contract import assert_complete
from tests.support.proc import SealboxProcess, wait_until

# The job's own effort is five attempts with 1+2+4+8 s between them (a tenth of that here, see
# the cluster fixture); against a key server that refuses connections each attempt takes
# milliseconds. The bounds hold for the unscaled waits too, on a loaded machine.
JOB_BOUND = 45.0
# The background retry backs off up to 30 s (3 s here): a key server that is back is found
# within that.
BACKGROUND_BOUND = 90.0
POLL = 0.2


def _status(cluster: SealboxProcess) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "sealbox.cli", "status", "--data-dir",
                          str(cluster.data_dir), "--json"], capture_output=True, text=True,
                         timeout=60, check=True)
    status: dict[str, Any] = json.loads(out.stdout)
    return status



@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SealboxProcess]:
    # Backoff scaled by 1/10 (0.1, 0.2, 0.4, 0.8 s in the job, at most 3 s in the background):
    # the same attempts and order, without a minute of waiting per test.
    proc = SealboxProcess(tmp_path / "data", nodes=2, extra=["--drives-per-node", "2"],
                          env={"SEALBOX_TEST_DECOMMISSION_FIRST_WAIT": "0.1"}).start()
    yield proc
    proc.stop()


@pytest.fixture
def on_old_server(cluster: SealboxProcess, own_kms: RunningKms,
                  tmp_path: Path) -> dict[str, Any]:
    """The cluster's master key on the key server (provider "old"), with data written under it."""
    sf = cluster.element()
    cert = trust(sf, own_kms, "sealbox-old-server")
    pid = provider(sf, own_kms, cert, "old")
    rekey(cluster, {"keyManagementType": "External", "keyProviderID": pid})
    old = _info(cluster)["masterKeyInfo"]
    assert old["keyProviderID"] == pid
    data = write_volume(cluster, "precious", tmp_path)
    return {"cert": cert, "pid": pid, "old": old, "data": data}


def _info(cluster: SealboxProcess) -> dict[str, Any]:
    info: dict[str, Any] = cluster.rpc("GetSoftwareEncryptionAtRestInfo")["result"]
    return info


def _faults(cluster: SealboxProcess, which: str, key_id: str) -> list[dict[str, Any]]:
    result = cluster.rpc("ListClusterFaults", {"faultTypes": which})["result"]
    assert_complete("ListClusterFaults", result)
    return [f for f in result["faults"] if f["code"] == "kmipServerFault"
            and (f["data"] or {}).get("keyID") == key_id]


def _job(cluster: SealboxProcess, handle: int) -> dict[str, Any]:
    job: dict[str, Any] = cluster.rpc("GetAsyncResult", {"asyncHandle": handle,
                                                         "keepResult": True})["result"]
    return job


def _listed(cluster: SealboxProcess, handle: int) -> dict[str, Any]:
    result = cluster.rpc("ListAsyncResults", {})["result"]
    assert_complete("ListAsyncResults", result)
    return next(h for h in result["asyncHandles"] if h["asyncResultID"] == handle)


def _start_rekey(cluster: SealboxProcess, params: dict[str, Any]) -> int:
    env = cluster.rpc("RekeySoftwareEncryptionAtRestMasterKey", params)
    assert "result" in env, env
    return int(env["result"]["asyncHandle"])


def _failing_decommission(cluster: SealboxProcess, handle: int,
                          key_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wait until the running job reports the failing decommission; (job details, fault)."""
    def seen() -> tuple[dict[str, Any], dict[str, Any]] | None:
        job = _job(cluster, handle)
        assert job["status"] == "running", job  # the job's bound must not have passed yet
        details = job["details"]
        faults = _faults(cluster, "current", key_id)
        if "reason" in details and faults:
            return details, faults[0]
        return None

    found: tuple[dict[str, Any], dict[str, Any]] = wait_until(
        seen, JOB_BOUND, "the failing decommission to be reported", interval=POLL)
    return found


def _completed(cluster: SealboxProcess, handle: int, timeout: float) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = _job(cluster, handle)
        return job if job["status"] == "complete" else None

    job: dict[str, Any] = wait_until(done, timeout, "the rekey to complete", interval=POLL)
    return job


def _active(cluster: SealboxProcess) -> list[int]:
    r = cluster.element().list_key_providers_kmip(key_provider_is_active=True)
    return [p.key_provider_id for p in r.kmip_key_providers]


def _on_key_server(cluster: SealboxProcess, kms: RunningKms, cert: str, key_id: str) -> list[str]:
    with kms_client(cluster, kms, cert) as keys:
        return keys.locate(name=f"sealbox-mk-{key_id}")


def _resolved(cluster: SealboxProcess, key_id: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_until(
        lambda: not _faults(cluster, "current", key_id)
        and _faults(cluster, "resolved", key_id), BACKGROUND_BOUND,
        "the old key to be destroyed and its fault resolved", interval=POLL)[0]
    return found


def test_rekey_to_internal_with_the_old_key_server_down(
        cluster: SealboxProcess, own_kms: RunningKms, on_old_server: dict[str, Any],
        tmp_path: Path) -> None:
    old, pid, cert = on_old_server["old"], on_old_server["pid"], on_old_server["cert"]
    own_kms.stop()
    began = time.monotonic()
    handle = _start_rekey(cluster, {"keyManagementType": "Internal"})

    # While it fails: a warning fault naming the old key, its provider and server, the error;
    # the job says the same, in GetAsyncResult and in ListAsyncResults.
    details, fault = _failing_decommission(cluster, handle, old["keyID"])
    assert fault["severity"] == "warning" and fault["type"] == "cluster"
    assert old["keyID"] in fault["details"] and f"key provider {pid}" in fault["details"]
    assert f"127.0.0.1:{own_kms.port}" in fault["details"] and "refused" in fault["details"]
    assert fault["data"]["reason"].startswith("xKmip")
    assert details["state"] == "DecommissionOldMasterKey"
    assert details["clusterFaultID"] == fault["clusterFaultID"]
    assert old["keyID"] in details["reason"] and f"127.0.0.1:{own_kms.port}" in details["reason"]
    assert details["decommissionError"]["name"] == fault["data"]["reason"]
    assert details["keyToDecommission"] == {"keyID": old["keyID"],
                                            "keyManagementType": "external",
                                            "keyProviderID": pid}
    listed = _listed(cluster, handle)
    assert listed["completed"] is False and listed["data"]["reason"]

    # The job completes within its bound, with the documented fields and the old key pending.
    job = _completed(cluster, handle, JOB_BOUND)
    assert time.monotonic() - began < JOB_BOUND
    r = job["result"]
    assert set(r) == {"keyToDecommission", "newKey", "operation", "state",
                      "keyToDecommissionState", "reason", "clusterFaultID"}
    assert r["state"] == "Ready" and r["keyToDecommissionState"] == "DecommissionPending"
    assert r["keyToDecommission"] == details["keyToDecommission"]
    assert r["newKey"]["keyManagementType"] == "internal"
    assert r["operation"] == (
        "Rekeying Master Key. Master Key management being transferred from External Key "
        f"Management with keyProviderID={pid} to Internal Key Management")
    assert r["clusterFaultID"] == fault["clusterFaultID"] and old["keyID"] in r["reason"]
    assert _listed(cluster, handle)["success"] is True
    assert _info(cluster)["masterKeyInfo"]["keyID"] == r["newKey"]["keyID"]

    # The fault stays, now saying the rekey is done; the old provider stays active for the
    # pending key, and DeleteKeyProviderKmip says so.
    pending = _faults(cluster, "current", old["keyID"])
    assert [f["clusterFaultID"] for f in pending] == [fault["clusterFaultID"]]
    assert "completed without destroying it" in pending[0]["details"]
    assert _active(cluster) == [pid]
    err = cluster.rpc("DeleteKeyProviderKmip", {"keyProviderID": pid})["error"]
    assert err["name"] == "xAPINotPermitted"
    assert old["keyID"] in err["message"] and "not yet revoked and destroyed" in err["message"]
    # `sealbox status` shows the admin the key still waiting on its key server.
    shown = _status(cluster)["encryption"]["pendingDecommission"]
    assert [(k["keyID"], k["keyProviderID"]) for k in shown] == [(old["keyID"], pid)]
    assert shown[0]["lastError"]["name"].startswith("xKmip")

    # Another rekey is accepted and completes; the data is intact.
    again = rekey(cluster, {"keyManagementType": "Internal"})["result"]
    assert again["keyToDecommission"] == r["newKey"]
    assert again["keyToDecommissionState"] == "Decommissioned"
    assert read_volume(cluster, "precious", tmp_path) == on_old_server["data"]

    # The old key server comes back: the background retry destroys the old key, resolves the
    # fault, and the provider becomes inactive and deletable.
    own_kms.start()
    _resolved(cluster, old["keyID"])
    assert _on_key_server(cluster, own_kms, cert, old["keyID"]) == []
    assert _active(cluster) == []
    assert cluster.rpc("DeleteKeyProviderKmip", {"keyProviderID": pid})["result"] == {}
    assert read_volume(cluster, "precious", tmp_path) == on_old_server["data"]


def test_restart_during_a_failing_decommission_resumes_it(
        cluster: SealboxProcess, own_kms: RunningKms, on_old_server: dict[str, Any],
        tmp_path: Path) -> None:
    old, cert = on_old_server["old"], on_old_server["cert"]
    own_kms.stop()
    handle = _start_rekey(cluster, {"keyManagementType": "Internal"})
    _details, fault = _failing_decommission(cluster, handle, old["keyID"])
    new = _info(cluster)["masterKeyInfo"]  # committed before the decommission began
    assert new["keyManagementType"] == "internal" and new["keyID"] != old["keyID"]

    cluster.kill()  # SIGKILL while the decommission fails
    cluster.start()
    # The job resumes: the same fault, and the job completes with the old key pending.
    job = _completed(cluster, handle, JOB_BOUND + 30)
    assert job["result"]["keyToDecommissionState"] == "DecommissionPending"
    assert job["result"]["newKey"]["keyID"] == new["keyID"]
    assert [f["clusterFaultID"] for f in _faults(cluster, "current", old["keyID"])] == [
        fault["clusterFaultID"]]
    assert _info(cluster)["masterKeyInfo"]["keyID"] == new["keyID"]
    assert read_volume(cluster, "precious", tmp_path) == on_old_server["data"]

    # A restart while it is pending keeps it: the fault stays, and the retry resumes.
    cluster.restart()
    assert _faults(cluster, "current", old["keyID"])
    own_kms.start()
    _resolved(cluster, old["keyID"])
    assert _on_key_server(cluster, own_kms, cert, old["keyID"]) == []
    assert _info(cluster)["masterKeyInfo"]["keyID"] == new["keyID"]
    assert read_volume(cluster, "precious", tmp_path) == on_old_server["data"]


def test_clearing_the_fault_gives_up_on_the_old_key(
        cluster: SealboxProcess, own_kms: RunningKms, on_old_server: dict[str, Any]) -> None:
    old, pid, cert = on_old_server["old"], on_old_server["pid"], on_old_server["cert"]
    own_kms.stop()
    handle = _start_rekey(cluster, {"keyManagementType": "Internal"})
    job = _completed(cluster, handle, JOB_BOUND)
    assert job["result"]["keyToDecommissionState"] == "DecommissionPending"
    assert _active(cluster) == [pid]

    # The admin decides the old key server is gone for good.
    assert cluster.rpc("ClearClusterFaults", {"faultTypes": "current"})["result"] == {}
    wait_until(lambda: _active(cluster) == [], 30, "the old provider to be released",
               interval=POLL)
    assert cluster.rpc("DeleteKeyProviderKmip", {"keyProviderID": pid})["result"] == {}
    assert not _faults(cluster, "all", old["keyID"])

    # Never forgotten silently: recorded and audited with the key server's identifier.
    conn = sqlite3.connect(f"file:{cluster.data_dir / 'sealbox.db'}?mode=ro", uri=True)
    try:
        (sear,) = conn.execute("SELECT body FROM docs WHERE coll = 'sear'").fetchone()
        audit = [json.loads(b) for (b,) in conn.execute(
            "SELECT body FROM docs WHERE coll = 'audit' ORDER BY id")]
    finally:
        conn.close()
    abandoned = json.loads(sear)["abandonedKeys"][old["keyID"]]
    assert abandoned["key"]["keyProviderID"] == pid and abandoned["abandonedTime"]
    gave_up = [a for a in audit if a["method"] == "AbandonMasterKeyDecommission"]
    assert len(gave_up) == 1 and old["keyID"] in gave_up[0]["detail"]
    assert abandoned["key"]["kmipUID"] in gave_up[0]["detail"]
    # The key is still on the key server (nobody destroyed it), as the record says.
    own_kms.start()
    assert len(_on_key_server(cluster, own_kms, cert, old["keyID"])) == 1
