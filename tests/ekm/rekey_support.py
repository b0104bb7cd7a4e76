"""Shared steps of the rekey tests: trust a key server, make a provider, rekey and wait, and
look at the key server with the cluster's own identity."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from sealbox.kmip.config import KmipEndpoint
from sealbox.kmip.provider import ProviderClient
from sealbox.kms import server as kms_server
from sealbox.kms.testing import RunningKms
from sealbox.secrets import Secret
from tests.support.proc import SealboxProcess, wait_until


def trust(sf: Any, kms: RunningKms, common_name: str = "sealbox-rekey") -> str:
    sf.create_public_private_key_pair(common_name=common_name)
    csr = sf.get_client_certificate_sign_request().client_certificate_sign_request
    return kms_server.sign_csr(kms.directory, csr).decode()


def provider(sf: Any, kms: RunningKms, cert: str, name: str) -> int:
    sid = sf.create_key_server_kmip(
        kmip_ca_certificate=kms.ca_pem.decode(), kmip_client_certificate=cert,
        kmip_key_server_hostnames=["127.0.0.1"], kmip_key_server_name=f"ks-{name}",
        kmip_key_server_port=kms.port).kmip_key_server.key_server_id
    pid = int(sf.create_key_provider_kmip(key_provider_name=name).kmip_key_provider
              .key_provider_id)
    sf.add_key_server_to_provider_kmip(key_provider_id=pid, key_server_id=sid)
    return pid


def rekey(cluster: SealboxProcess, params: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    env = cluster.rpc("RekeySoftwareEncryptionAtRestMasterKey", params)
    assert "result" in env, env
    handle = env["result"]["asyncHandle"]

    def done() -> dict[str, Any] | None:
        r = cluster.rpc("GetAsyncResult", {"asyncHandle": handle, "keepResult": True})["result"]
        return r if r["status"] == "complete" else None

    result: dict[str, Any] = wait_until(done, timeout, "the rekey to complete")
    return result


def cluster_endpoint(cluster: SealboxProcess, kms: RunningKms, cert: str) -> KmipEndpoint:
    """The key server as the cluster sees it (same client identity, so same key owner)."""
    key = next((cluster.data_dir / "keys").glob("cluster-*.key")).read_bytes()
    return KmipEndpoint(hostnames=("127.0.0.1",), ca_pem=kms.ca_pem,
                        client_cert_pem=cert.encode(), client_key_pem=Secret(key), port=kms.port)


def kms_client(cluster: SealboxProcess, kms: RunningKms, cert: str) -> ProviderClient:
    return ProviderClient([cluster_endpoint(cluster, kms, cert)])


def write_volume(cluster: SealboxProcess, name: str, tmp: Path, size: int = 4 << 20) -> bytes:
    sf = cluster.element()
    accounts = sf.list_accounts().accounts
    account = accounts[0].account_id if accounts else sf.add_account(username="t").account_id
    sf.create_volume(name=name, account_id=account, total_size=size)
    data = os.urandom(size)
    (tmp / f"{name}.in").write_bytes(data)
    nbd(["nbdcopy", str(tmp / f"{name}.in"), f"nbd://127.0.0.1:{cluster.nbd_port}/{name}"])
    return data


def read_volume(cluster: SealboxProcess, name: str, tmp: Path) -> bytes:
    out = tmp / f"{name}.out"
    nbd(["nbdcopy", f"nbd://127.0.0.1:{cluster.nbd_port}/{name}", str(out)])
    return out.read_bytes()


def nbd(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done
