"""Crash safety of EnableEncryptionAtRest / DisableEncryptionAtRest, proven: a real sealbox
process is killed with SIGKILL at many instants while drives are being locked with new
authentication keys on a real PyKMIP server, or unlocked and their keys destroyed. After each
restart the cluster finishes the switch by itself, and then: every drive is locked exactly when
encryption is enabled, each locked drive's recorded key is active on the key server and opens
it, no recorded key is left after a disable, the key server holds no authentication key that no
drive records (a kill between a Register and its record included), and the volume reads
back."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from sealbox.kmip.client import KeyState, ObjectKind
from sealbox.kms.testing import RunningKms
from sealbox.storage.disk import Disk
from tests.ekm.rekey_support import kms_client, provider, read_volume, trust, write_volume
from tests.support.proc import SealboxProcess, wait_until

KILLS = int(os.environ.get("SEALBOX_EAR_KILLS", "30"))
STEP_DELAY = 0.05  # each drive pauses this long between its steps (SEALBOX_TEST_EAR_STEP_DELAY)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealboxProcess]:
    proc = SealboxProcess(tmp_path_factory.mktemp("earcrash") / "data", nodes=2, extra=[
        "--drives-per-node", "3", "--unlock-retry-max", "1"],
        env={"SEALBOX_TEST_EAR_STEP_DELAY": str(STEP_DELAY)}).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def key_provider(cluster: SealboxProcess, kms: RunningKms) -> tuple[str, int]:
    """The cluster's KMIP client certificate and a key provider on ``kms``, made once: a new
    key pair is refused while a key server uses the current one."""
    sf = cluster.element()
    cert = trust(sf, kms, "sealbox-earcrash")
    return cert, provider(sf, kms, cert, "earcrash")


def _settled(cluster: SealboxProcess) -> str | None:
    state: str = cluster.rpc("GetClusterInfo")["result"]["clusterInfo"]["encryptionAtRestState"]
    return state if state in ("enabled", "disabled") else None


def _drive_files(cluster: SealboxProcess) -> dict[int, Path]:
    return {d["driveID"]: cluster.data_dir / "drives" / f"node{d['nodeID']}" /
            f"drive{d['slot']}.img"
            for d in cluster.rpc("ListDrives")["result"]["drives"]}


def _check(cluster: SealboxProcess, kms: RunningKms, cert: str, state: str,
           seen_keys: set[str]) -> None:
    drives = cluster.rpc("ListDrives")["result"]["drives"]
    files = _drive_files(cluster)
    with kms_client(cluster, kms, cert) as client:
        recorded = {uid for d in drives if "keyID" in d
                    for uid in client.locate(name=f"sealbox-ak-{d['keyID']}")}
        # every Secret Data object of this cluster on the server is a recorded drive's AK
        assert set(client.locate(kind=ObjectKind.SECRET_DATA)) == recorded
        for d in drives:
            with Disk.open(files[d["driveID"]]) as disk:
                assert disk.locked == (state == "enabled"), (state, d)
                if state == "enabled":
                    uids = client.locate(name=f"sealbox-ak-{d['keyID']}")
                    assert len(uids) == 1, d
                    assert client.get_attributes(uids[0]).state is KeyState.ACTIVE
                    disk.unlock(client.get(uids[0]))  # the recorded key opens the drive
                    seen_keys.add(d["keyID"])
                else:
                    assert "keyID" not in d, d
        if state == "disabled":
            for key_id in seen_keys:  # every key the cluster ever recorded is gone
                assert client.locate(name=f"sealbox-ak-{key_id}") == [], key_id


def test_kill_9_while_switching_encryption_at_rest(cluster: SealboxProcess, kms: RunningKms,
                                                   key_provider: tuple[str, int],
                                                   tmp_path: Path) -> None:
    cert, pid = key_provider
    data = write_volume(cluster, "crash", tmp_path)
    rng = random.Random(7)
    seen_keys: set[str] = set()
    mid_switch = 0
    for kill in range(KILLS):
        enable = kill % 2 == 0
        env = cluster.rpc("EnableEncryptionAtRest", {"keyProviderID": pid}) if enable \
            else cluster.rpc("DisableEncryptionAtRest")
        assert env.get("result") == {}, env
        # The kill instant: after 0-39 API calls, spread from the answer to past the end of the
        # switch (six drives, a few STEP_DELAY pauses each).
        last = "enabling" if enable else "disabling"
        for _ in range(rng.randrange(0, 40)):
            last = _settled(cluster) or last
        mid_switch += last in ("enabling", "disabling")
        cluster.kill()
        cluster.start()
        want = "enabled" if enable else "disabled"
        got = wait_until(lambda: _settled(cluster), 60, "the switch to finish")
        assert got == want, (kill, got)
        _check(cluster, kms, cert, want, seen_keys)
        if kill % 5 == 4:
            assert read_volume(cluster, "crash", tmp_path) == data
    assert read_volume(cluster, "crash", tmp_path) == data
    assert mid_switch >= KILLS // 3, f"only {mid_switch} of {KILLS} kills hit a switch"


def test_kill_9_between_registering_a_key_and_recording_it(
        cluster: SealboxProcess, kms: RunningKms, key_provider: tuple[str, int]) -> None:
    """The narrowest window: the key server has a drive's new AK, the cluster has not yet
    recorded its identifier. The drive's planned record names the key, so after the restart
    the cluster destroys it (found by name) and makes another: no key is left on the server
    that no drive records."""
    cert, pid = key_provider
    seen: set[str] = set()
    replaced = 0
    for _ in range(4):
        if _settled(cluster) != "disabled":
            cluster.rpc("DisableEncryptionAtRest")
            wait_until(lambda: _settled(cluster) == "disabled", 60, "encryption to be disabled")
        assert cluster.rpc("EnableEncryptionAtRest", {"keyProviderID": pid}).get("result") == {}

        def unlocked_with_key() -> str | None:
            info = cluster.rpc("GetEncryptionAtRestInfo")["result"]
            return next((d["keyID"] for d in info["drives"]
                         if "keyID" in d and not d["securityEnabled"]), None)
        key_id = wait_until(unlocked_with_key, 30, "a drive with a new key", interval=0.0)
        with kms_client(cluster, kms, cert) as client:
            name = f"sealbox-ak-{key_id}"
            wait_until(partial(client.locate, name=name), 30, "the Register", interval=0.0)
            cluster.kill()  # most often before the cluster records the key's identifier
            cluster.start()
            assert wait_until(lambda: _settled(cluster), 60, "the switch to finish") == "enabled"
            _check(cluster, kms, cert, "enabled", seen)
            replaced += not client.locate(name=name)  # it was planned, not yet recorded
    assert replaced >= 1, "no kill landed between a Register and its record"
