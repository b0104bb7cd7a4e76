"""A removal cut short by ``kill -9`` resumes at the next start only once the drives are
unlocked. With the master key on a key server that is down at that start, the job waits (it
is still running, the drive still ``removing``) instead of judging drives it cannot see, and
finishes when the key server is back: the drive ends ``available`` and the data reads back.
A real sealbox process, a real PyKMIP key server over mutual TLS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sealbox.kms.testing import RunningKms
from tests.drives.helpers import MIB, drive, open_fault, read_back, wait_job, write_random
from tests.ekm.rekey_support import provider, rekey, trust
from tests.support.proc import SealboxProcess, wait_until

BLOCK = 2  # node 1's block drive (3 nodes x 2 drives: slice 1, 3, 5; block 2, 4, 6)



def _removal(cluster: SealboxProcess) -> dict[str, Any]:
    jobs = cluster.rpc("ListAsyncResults", {"asyncResultTypes": ["DriveRemoval"]})
    job: dict[str, Any] = jobs["result"]["asyncHandles"][0]
    return job


def test_a_resumed_removal_waits_for_the_key_server(tmp_path: Path, own_kms: RunningKms) -> None:
    cluster = SealboxProcess(tmp_path / "data", drive_size="128MiB", nodes=3,
                             extra=["--drives-per-node", "2", "--unlock-retry-max", "1"],
                             env={"SEALBOX_TEST_REMOVAL_STEP_DELAY": "2.0"}).start()
    try:
        sf = cluster.element()
        pid = provider(sf, own_kms, trust(sf, own_kms), "removal")
        rekey(cluster, {"keyManagementType": "External", "keyProviderID": pid})
        account = sf.add_account(username="rl").account_id
        sf.create_volume(name="rl", account_id=account, total_size=96 * MIB)
        data = write_random(cluster, "rl", tmp_path / "in.img", 96 * MIB)

        handle = cluster.rpc("RemoveDrives", {"drives": [BLOCK]})["result"]["asyncHandle"]
        wait_until(lambda: _removal(cluster)["data"].get("chunksMoved", 0) > 0, 60,
                   "the removal to move chunks")
        cluster.kill()

        own_kms.stop()
        cluster.start()
        # the first unlock attempt has failed: the drives are locked
        wait_until(lambda: open_fault(cluster, "kmipServerFault", "Cannot unlock"), 30,
                   "the unlock fault")
        job = _removal(cluster)
        assert not job["completed"], job
        assert drive(cluster, BLOCK)["status"] == "removing"

        own_kms.start()
        done = wait_job(cluster, handle, timeout=120)
        assert "error" not in done, done
        assert drive(cluster, BLOCK)["status"] == "available"
        assert read_back(cluster, "rl", tmp_path / "out.img") == data
    finally:
        cluster.stop()
