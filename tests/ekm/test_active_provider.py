"""The rules that protect keys in use: an active provider cannot be deleted and its last server
cannot be removed or deleted. The provider is made active the way the cluster does it: a key is
created on its key server through the KMIP adapter and recorded as in use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealbox.api import dispatch
from sealbox.api.registry import load_all
from sealbox.cluster.admins import Principal
from sealbox.cluster.runtime import Cluster
from sealbox.config import Settings
from sealbox.kmip.client import KeyState
from sealbox.kmip.provider import ProviderClient
from sealbox.kms import server as kms_server
from sealbox.kms.testing import RunningKms
from sealbox.secrets import Secret


class Api:
    def __init__(self, cluster: Cluster, who: Principal) -> None:
        self.cluster, self.who = cluster, who

    def __call__(self, method: str, **params: Any) -> dict[str, Any]:
        body = json.dumps({"method": method, "params": params, "id": 1}).encode()
        return dispatch.handle(self.cluster, self.who, body)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    load_all()
    settings = Settings(data_dir=tmp_path / "data", drive_size=64 << 20,
                        admin_password=Secret(b"admin-password"))
    cluster = Cluster.open(settings)
    cluster.first_start()
    who = cluster.admins.authenticate("admin", Secret(b"admin-password"))
    assert who is not None
    yield Api(cluster, who)
    cluster.close()


def _provider_with_server(api: Api, kms: RunningKms) -> tuple[int, int]:
    assert "result" in api("CreatePublicPrivateKeyPair", commonName="active-test")
    csr = api("GetClientCertificateSignRequest")["result"]["clientCertificateSignRequest"]
    cert = kms_server.sign_csr(kms.directory, csr).decode()
    sid = api("CreateKeyServerKmip", kmipCaCertificate=kms.ca_pem.decode(),
              kmipClientCertificate=cert, kmipKeyServerHostnames=["127.0.0.1"],
              kmipKeyServerName="ks", kmipKeyServerPort=kms.port)["result"]["kmipKeyServer"]
    pid = api("CreateKeyProviderKmip", keyProviderName="p")["result"]["kmipKeyProvider"]
    assert "result" in api("AddKeyServerToProviderKmip", keyProviderID=pid["keyProviderID"],
                           keyServerID=sid["keyServerID"])
    return pid["keyProviderID"], sid["keyServerID"]


def test_active_provider_is_protected(api: Api, kms: RunningKms) -> None:
    pid, sid = _provider_with_server(api, kms)
    c = api.cluster
    with c.store.read() as txn:
        endpoints = c.keyservers.provider_endpoints(txn, pid)
    with ProviderClient(endpoints) as keys:
        uid = keys.create_symmetric_key("active-test-key")
        assert keys.get_attributes(uid).state is KeyState.ACTIVE
    with c.store.write() as txn:
        c.keyservers.mark_in_use(txn, pid, "test key " + uid)

    assert api("GetKeyProviderKmip", keyProviderID=pid)["result"]["kmipKeyProvider"][
        "keyProviderIsActive"] is True
    listed = api("ListKeyServersKmip", kmipAssignedProviderIsActive=True)["result"]
    assert [s["keyServerID"] for s in listed["kmipKeyServers"]] == [sid]
    for method, params in [("DeleteKeyProviderKmip", {"keyProviderID": pid}),
                           ("RemoveKeyServerFromProviderKmip", {"keyServerID": sid}),
                           ("DeleteKeyServerKmip", {"keyServerID": sid})]:
        err = api(method, **params)["error"]
        assert err["name"] == "xAPINotPermitted", (method, err)
        assert "active" in err["message"], err
    assert api("GetKeyServerKmip", keyServerID=sid)["result"]["kmipKeyServer"][
        "keyProviderID"] == pid

    with c.store.write() as txn:
        c.keyservers.release(txn, pid, "test key " + uid)
    assert "result" in api("RemoveKeyServerFromProviderKmip", keyServerID=sid)
    assert "result" in api("DeleteKeyProviderKmip", keyProviderID=pid)


def test_ecdsa_key_pair_option(tmp_path: Path) -> None:
    """``--client-key-type ecdsa-p256``: the cluster's key pair and its CSR are ECDSA P-256."""
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from sealbox.kmip.certs import KeyType

    load_all()
    settings = Settings(data_dir=tmp_path / "data", drive_size=64 << 20, nodes=2,
                        admin_password=Secret(b"admin-password"),
                        client_key_type=KeyType.ECDSA_P256)
    cluster = Cluster.open(settings)
    try:
        cluster.first_start()
        who = cluster.admins.authenticate("admin", Secret(b"admin-password"))
        assert who is not None
        api = Api(cluster, who)
        assert "result" in api("CreatePublicPrivateKeyPair", commonName="ec-cluster",
                               country="DE", organization="Example")
        csr_b64 = api("GetClientCertificateSignRequest")["result"]["clientCertificateSignRequest"]
        csr = x509.load_der_x509_csr(base64.b64decode(csr_b64))
        key = csr.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
        assert csr.is_signature_valid
        assert "CN=ec-cluster" in csr.subject.rfc4514_string()
        err = api("CreatePublicPrivateKeyPair", country="Germany")["error"]
        assert err["name"] == "xInvalidParameter" and "country" in err["message"]
    finally:
        cluster.close()
