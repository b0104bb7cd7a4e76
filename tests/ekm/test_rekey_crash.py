"""Crash safety of the rekey, proven: a real sealbox process is killed with SIGKILL at many
instants spread over every phase of a rekey (while the new key is being created on the key
server, between its creation and the commit, while data keys are rewrapped, during the
decommission of the old key), restarted each time, and checked: the data reads back, there is
exactly one current master key, the job finished or was cleanly rolled back, and no orphaned
active key is left on the key server."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealbox.kmip.client import KeyState
from sealbox.kms.testing import RunningKms
from tests.ekm.rekey_support import kms_client, provider, read_volume, trust, write_volume
from tests.support.proc import SealboxProcess, wait_until

KILLS = int(os.environ.get("SEALBOX_REKEY_KILLS", "52"))
PHASES = ["request", "CreateNewMasterKey", "RewrapDataEncryptionKeys",
          "DecommissionOldMasterKey"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealboxProcess]:
    proc = SealboxProcess(tmp_path_factory.mktemp("crash") / "data", nodes=2, extra=[
        "--drives-per-node", "2", "--unlock-retry-max", "1"],
        env={"SEALBOX_TEST_REKEY_STEP_DELAY": "0.15"}).start()
    yield proc
    proc.stop()


def _state(cluster: SealboxProcess, handle: int) -> str | None:
    try:
        env = cluster.rpc("GetAsyncResult", {"asyncHandle": handle, "keepResult": True})
    except Exception:
        return None
    r = env.get("result") or {}
    if r.get("status") == "complete":
        return "complete"
    return str((r.get("details") or {}).get("state", "request"))


def _kill_during(cluster: SealboxProcess, params: dict[str, Any], phase: str,
                 extra_polls: int) -> int | None:
    env = cluster.rpc("RekeySoftwareEncryptionAtRestMasterKey", params)
    if "error" in env:
        raise AssertionError(env)
    handle = int(env["result"]["asyncHandle"])
    if phase != "request":
        wait_until(lambda: _state(cluster, handle) in (phase, "complete"), 30, phase,
                   interval=0.01)
    for _ in range(extra_polls):  # spread the kill over the phase
        _state(cluster, handle)
    cluster.kill()
    return handle


def _check(cluster: SealboxProcess, kms: RunningKms, cert: str, handle: int | None,
           data: bytes, tmp: Path) -> str:
    def settled() -> dict[str, Any] | None:
        env = cluster.rpc("GetAsyncResult", {"asyncHandle": handle, "keepResult": True})
        r = env.get("result")
        return r if r and r["status"] == "complete" else None

    outcome = "none"
    if handle is not None:
        r = wait_until(settled, 60, "the interrupted rekey to settle")
        assert ("error" in r) != ("result" in r)
        if "error" in r:
            assert r["error"]["name"] == "xRekeyInterrupted", r
            outcome = "rolled back"
        else:
            assert r["result"]["state"] == "Ready"
            outcome = "finished"
    wait_until(lambda: not [f for f in cluster.rpc("ListClusterFaults", {
        "faultTypes": "current"})["result"]["faults"] if f["code"] == "kmipServerFault"],
        30, "unlock")
    info = cluster.rpc("GetSoftwareEncryptionAtRestInfo")["result"]
    current = info["masterKeyInfo"]
    internal_files = sorted(p.stem for p in (cluster.data_dir / "keys" / "master").glob("*.mk"))
    with kms_client(cluster, kms, cert) as keys:
        active = [u for u in keys.locate() if keys.get_attributes(u).state is KeyState.ACTIVE]
        names = {u: keys.get_attributes(u).name for u in active}
    if current["keyManagementType"] == "internal":
        assert internal_files == [current["keyID"]]
        assert active == [], names
    else:
        assert internal_files == []
        assert list(names.values()) == [f"sealbox-mk-{current['keyID']}"], names
    assert read_volume(cluster, "crashy", tmp) == data
    return outcome


def test_one_rekey_at_a_time(cluster: SealboxProcess) -> None:
    # Each step of a rekey is slowed here, so the first is surely still running.
    first = cluster.rpc("RekeySoftwareEncryptionAtRestMasterKey",
                        {"keyManagementType": "Internal"})["result"]["asyncHandle"]
    err = cluster.rpc("RekeySoftwareEncryptionAtRestMasterKey",
                      {"keyManagementType": "Internal"})["error"]
    assert err["name"] == "xAPINotPermitted"
    assert "already in progress" in err["message"] and str(first) in err["message"]
    wait_until(lambda: _state(cluster, first) == "complete", 60, "the first rekey")


def test_kill_9_at_every_phase_of_a_rekey(cluster: SealboxProcess, kms: RunningKms,
                                          tmp_path: Path) -> None:
    sf = cluster.element()
    cert = trust(sf, kms, "sealbox-crash")
    pid = provider(sf, kms, cert, "crash")
    data = write_volume(cluster, "crashy", tmp_path)
    rng = random.Random(1234)
    targets = itertools.cycle([{"keyManagementType": "External", "keyProviderID": pid},
                               {"keyManagementType": "External", "keyProviderID": pid},
                               {"keyManagementType": "Internal"}])
    outcomes: dict[str, int] = {}
    for i in range(KILLS):
        phase = PHASES[i % len(PHASES)]
        handle = _kill_during(cluster, next(targets), phase, rng.randrange(0, 6))
        cluster.start()
        outcome = _check(cluster, kms, cert, handle, data, tmp_path)
        outcomes[f"{phase}: {outcome}"] = outcomes.get(f"{phase}: {outcome}", 0) + 1
    print("rekey kill outcomes:", outcomes)
    # Both ways out were taken: rolled back before the commit, rolled forward after it.
    assert any(k.endswith("rolled back") for k in outcomes), outcomes
    assert any(k.endswith("finished") for k in outcomes), outcomes
