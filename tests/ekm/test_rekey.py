"""The seed's rekey procedure through the official SDK against a real sealbox process and a
real PyKMIP key server: internal → external, external → external (same provider, and another
provider), external → internal; with the key server checked with the cluster's own identity."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealbox.kmip.client import KeyState
from sealbox.kms.testing import RunningKms
from tests.ekm.rekey_support import (
    kms_client,
    provider,
    read_volume,
    rekey,
    trust,
    write_volume,
)
from tests.support.contract import assert_complete
from tests.support.proc import SealboxProcess


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealboxProcess]:
    proc = SealboxProcess(tmp_path_factory.mktemp("rekey") / "data", nodes=2,
                          extra=["--drives-per-node", "2"]).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def setup(cluster: SealboxProcess, kms: RunningKms) -> dict[str, Any]:
    sf = cluster.element()
    cert = trust(sf, kms)
    return {"cert": cert, "p1": provider(sf, kms, cert, "first"),
            "p2": provider(sf, kms, cert, "second")}


def _info(cluster: SealboxProcess) -> dict[str, Any]:
    raw: dict[str, Any] = cluster.rpc("GetSoftwareEncryptionAtRestInfo")["result"]
    assert_complete("GetSoftwareEncryptionAtRestInfo", raw)
    return raw


def _active_providers(cluster: SealboxProcess) -> list[int]:
    r = cluster.element().list_key_providers_kmip(key_provider_is_active=True)
    return [p.key_provider_id for p in r.kmip_key_providers]


def test_internal_to_external_as_the_seed_does_it(
        cluster: SealboxProcess, kms: RunningKms, setup: dict[str, Any], tmp_path: Path) -> None:
    data = write_volume(cluster, "before-rekey", tmp_path)
    old = _info(cluster)["masterKeyInfo"]
    assert old["keyManagementType"] == "internal"
    # The seed sends the method in lower case and the provider ID as a string.
    env = cluster.post({"method": "rekeysoftwareencryptionatrestmasterkey", "id": 1,
                        "params": {"keyManagementType": "external",
                                   "keyProviderID": str(setup["p1"])}}).json()
    handle = env["result"]["asyncHandle"]
    from tests.support.proc import wait_until

    result = wait_until(lambda: (r := cluster.rpc("GetAsyncResult", {
        "asyncHandle": handle, "keepResult": True})["result"])["status"] == "complete" and r,
        60, "the rekey")
    assert result["resultType"] == "RekeySoftwareEncryptionAtRestMasterKey"
    assert set(result) >= {"createTime", "lastUpdateTime", "result", "status"}
    r = result["result"]
    assert r["state"] == "Ready"
    assert set(result) == {"createTime", "lastUpdateTime", "resultType", "status", "result"}
    assert r["keyToDecommission"] == {"keyID": old["keyID"], "keyManagementType": "internal"}
    assert r["newKey"] == {"keyID": r["newKey"]["keyID"], "keyManagementType": "external",
                           "keyProviderID": setup["p1"]}
    assert r["operation"] == (
        "Rekeying Master Key. Master Key management being transferred from Internal Key "
        f"Management to External Key Management with keyProviderID={setup['p1']}")

    info = _info(cluster)
    assert info["state"] == info["status"] == "enabled"
    assert info["rekeyMasterKeyAsyncResultID"] == handle
    new = info["masterKeyInfo"]
    assert new["keyID"] == r["newKey"]["keyID"] and uuid.UUID(new["keyID"])
    assert new["keyManagementType"] == "external" and new["keyProviderID"] == setup["p1"]
    sdk = cluster.element().get_software_encryption_at_rest_info()
    assert str(sdk.master_key_info.key_id) == new["keyID"]

    # On the key server: the new key exists and is active; no internal key file remains.
    with kms_client(cluster, kms, setup["cert"]) as keys:
        uids = keys.locate(name=f"sealbox-mk-{new['keyID']}")
        assert len(uids) == 1
        assert keys.get_attributes(uids[0]).state is KeyState.ACTIVE
    assert not list((cluster.data_dir / "keys" / "master").glob("*.mk"))
    assert _active_providers(cluster) == [setup["p1"]]
    servers = cluster.element().list_key_servers_kmip(kmip_assigned_provider_is_active=True)
    assert [s.key_provider_id for s in servers.kmip_key_servers] == [setup["p1"]]

    assert read_volume(cluster, "before-rekey", tmp_path) == data
    cluster.restart()
    assert _info(cluster)["masterKeyInfo"]["keyID"] == new["keyID"]
    assert read_volume(cluster, "before-rekey", tmp_path) == data


def test_external_rekeys_and_migration(cluster: SealboxProcess, kms: RunningKms,
                                       setup: dict[str, Any], tmp_path: Path) -> None:
    data = write_volume(cluster, "migrating", tmp_path)
    first = _info(cluster)["masterKeyInfo"]
    if first["keyManagementType"] == "internal":
        rekey(cluster, {"keyManagementType": "External", "keyProviderID": setup["p1"]})
        first = _info(cluster)["masterKeyInfo"]
    # Same provider, new key: the old one is revoked and destroyed on the key server.
    r = rekey(cluster, {"keyManagementType": "External", "keyProviderID": setup["p1"]})
    assert "remains External Key Management" in r["result"]["operation"]
    same = _info(cluster)["masterKeyInfo"]
    assert same["keyID"] != first["keyID"] and same["keyProviderID"] == setup["p1"]
    with kms_client(cluster, kms, setup["cert"]) as keys:
        assert keys.locate(name=f"sealbox-mk-{first['keyID']}") == []
    assert _active_providers(cluster) == [setup["p1"]]
    # Another provider: p2 becomes active, p1 inactive once its key is gone.
    rekey(cluster, {"keyManagementType": "External", "keyProviderID": setup["p2"]})
    moved = _info(cluster)["masterKeyInfo"]
    assert moved["keyProviderID"] == setup["p2"]
    assert _active_providers(cluster) == [setup["p2"]]
    # Back to internal: p2 inactive, an internal key file again.
    r = rekey(cluster, {"keyManagementType": "internal"})
    assert r["result"]["newKey"]["keyManagementType"] == "internal"
    assert _active_providers(cluster) == []
    assert len(list((cluster.data_dir / "keys" / "master").glob("*.mk"))) == 1
    with kms_client(cluster, kms, setup["cert"]) as keys:
        assert keys.locate(name=f"sealbox-mk-{moved['keyID']}") == []
    assert read_volume(cluster, "migrating", tmp_path) == data


@pytest.mark.parametrize("params,name,words", [
    ({"keyManagementType": "External"}, "xInvalidParameter", "keyProviderID"),
    ({"keyManagementType": "Internal", "keyProviderID": 1}, "xInvalidParameter", "only valid"),
    ({"keyManagementType": "cloud"}, "xInvalidParameter", "keyManagementType"),
    ({"keyManagementType": "External", "keyProviderID": 999}, "xKeyProviderIDDoesNotExist", ""),
])
def test_bad_rekey_requests_change_nothing(cluster: SealboxProcess, setup: dict[str, Any],
                                           params: dict[str, Any], name: str,
                                           words: str) -> None:
    before = _info(cluster)
    err = cluster.rpc("RekeySoftwareEncryptionAtRestMasterKey", params)["error"]
    assert err["name"] == name and words in err["message"]
    assert _info(cluster) == before


def test_rekey_cli_shows_progress_and_the_result(cluster: SealboxProcess,
                                                 setup: dict[str, Any]) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "sealbox.cli", "rekey", "--data-dir", str(cluster.data_dir),
           "--port", str(cluster.port)]
    env = {"SEALBOX_ADMIN_PASSWORD": cluster.password, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([*cmd, "--provider", str(setup["p1"])], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"keyProviderID={setup['p1']}" in out.stdout and "new master key" in out.stdout
    assert _info(cluster)["masterKeyInfo"]["keyProviderID"] == setup["p1"]
    bad = subprocess.run([*cmd, "--provider", "999"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode != 0 and "xKeyProviderIDDoesNotExist" in bad.stderr
    both = subprocess.run([*cmd, "--internal", "--provider", "1"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert both.returncode != 0 and "exactly one" in both.stderr
    out = subprocess.run([*cmd, "--internal"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0 and "Internal Key Management" in out.stdout


def test_target_provider_failing_its_test_refuses_the_rekey(
        cluster: SealboxProcess, setup: dict[str, Any], tmp_path: Path) -> None:
    from sealbox.kms.testing import launch_kms

    other = launch_kms(tmp_path / "other-kms")
    try:
        sf = cluster.element()
        # The cluster's certificate must come from this server's CA: trust it with a new CSR.
        from sealbox.kms import server as kms_server

        csr = sf.get_client_certificate_sign_request().client_certificate_sign_request
        cert = kms_server.sign_csr(other.directory, csr).decode()
        pid = provider(sf, other, cert, "doomed")
    finally:
        other.stop()
    before = _info(cluster)
    err = cluster.rpc("RekeySoftwareEncryptionAtRestMasterKey",
                      {"keyManagementType": "External", "keyProviderID": pid})["error"]
    assert err["name"].startswith("xKmip") and "refused" in err["message"].lower()
    assert _info(cluster) == before
    assert pid not in _active_providers(cluster)


def test_key_operations_are_audited_without_key_bytes(cluster: SealboxProcess) -> None:
    import json
    import sqlite3

    conn = sqlite3.connect(f"file:{cluster.data_dir / 'sealbox.db'}?mode=ro", uri=True)
    rows = [json.loads(b) for (b,) in conn.execute(
        "SELECT body FROM docs WHERE coll = 'audit' ORDER BY id")]
    conn.close()
    methods = {r["method"] for r in rows}
    assert {"RekeySoftwareEncryptionAtRestMasterKey", "CreateMasterKey",
            "kmip.GetMasterKey", "kmip.DestroyMasterKey"} <= methods, methods
    created = [r for r in rows if r["method"] == "CreateMasterKey" and r["outcome"] == "success"]
    assert all("keyID=" in r["detail"] and "provider=" in r["detail"] for r in created)
    for path in (cluster.data_dir / "keys" / "master").glob("*.mk"):
        key = path.read_bytes()
        assert key.hex() not in json.dumps(rows)
