"""sealbox stopped (SIGTERM) while an interrupted rekey waits at start-up for the drives to
unlock: the job must stay running and finish at the next start, not end with "sealbox is
stopping" and leave its rekey record behind, which refused every later rekey as "already in
progress" with no way out. A real sealbox process, a real PyKMIP key server over mutual TLS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sealbox.kms.testing import RunningKms
from tests.ekm.rekey_support import provider, read_volume, rekey, trust, write_volume
from tests.support.proc import SealboxProcess, wait_until

# Each rekey step pauses this long, so that a kill -9 lands inside the rewrap.
STEP_DELAY = "1.0"



def _job(cluster: SealboxProcess, handle: int) -> dict[str, Any]:
    result: dict[str, Any] = cluster.rpc("GetAsyncResult", {"asyncHandle": handle,
                                                            "keepResult": True})["result"]
    return result


def test_a_stop_while_a_resumed_rekey_waits_for_unlock_keeps_it_resumable(
        tmp_path: Path, own_kms: RunningKms) -> None:
    cluster = SealboxProcess(tmp_path / "data", nodes=2, extra=["--drives-per-node", "2"],
                             env={"SEALBOX_TEST_REKEY_STEP_DELAY": STEP_DELAY}).start()
    try:
        sf = cluster.element()
        pid = provider(sf, own_kms, trust(sf, own_kms), "external")
        rekey(cluster, {"keyManagementType": "External", "keyProviderID": pid})
        external = cluster.rpc("GetSoftwareEncryptionAtRestInfo")["result"]["masterKeyInfo"]
        data = write_volume(cluster, "kept", tmp_path)

        # A rekey back to internal, killed while it rewraps: before its commit, so the
        # cluster is still on the external key, which the next start must fetch.
        handle = cluster.rpc("RekeySoftwareEncryptionAtRestMasterKey",
                             {"keyManagementType": "Internal"})["result"]["asyncHandle"]
        wait_until(lambda: _job(cluster, handle)["details"].get("state")
                   == "RewrapDataEncryptionKeys", 60, "the rekey to rewrap")
        cluster.kill()

        # Key server down: the job resumes at start and waits for the drives; then a
        # graceful stop.
        own_kms.stop()
        cluster.start()
        assert _job(cluster, handle)["status"] == "running"
        assert cluster.stop() == 0

        # Key server back: the job finishes (rolled back: it was interrupted before its
        # commit), the cluster is on the external key it had, and a new rekey is accepted.
        own_kms.start()
        cluster.start()
        done = wait_until(lambda: (j := _job(cluster, handle))["status"] == "complete" and j,
                          90, "the resumed rekey to finish")
        assert done["error"]["name"] == "xRekeyInterrupted", done
        assert "rolled back" in done["error"]["message"]
        info = cluster.rpc("GetSoftwareEncryptionAtRestInfo")["result"]
        assert info["masterKeyInfo"] == external
        again = rekey(cluster, {"keyManagementType": "Internal"}, timeout=90)
        assert again["result"]["keyToDecommission"]["keyID"] == external["keyID"], again
        assert read_volume(cluster, "kept", tmp_path) == data
    finally:
        cluster.stop()
