"""The seed's trust setup (steps 1-2) through the official SDK, against a real sealbox process
and a real PyKMIP key server over mutual TLS; then each way it can go wrong."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from solidfire.common import ApiServerError

from sealbox.kms import server as kms_server
from sealbox.kms.testing import RunningKms, closed_port
from tests.support.contract import assert_complete
from tests.support.proc import SealboxProcess


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealboxProcess]:
    proc = SealboxProcess(tmp_path_factory.mktemp("sbx") / "data",
                          extra=["--kmip-timeout", "2"]).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def trusted(cluster: SealboxProcess, kms: RunningKms) -> dict[str, Any]:
    """Steps 1a-1c: key pair, CSR, signed by the key server's CA."""
    sf = cluster.element()
    sf.create_public_private_key_pair(common_name="sealbox-cluster", organization="Example",
                                      country="US")
    csr = sf.get_client_certificate_sign_request().client_certificate_sign_request
    cert = kms_server.sign_csr(kms.directory, csr).decode()
    return {"ca": kms.ca_pem.decode(), "cert": cert}


def _create(sf: Any, kms: RunningKms, trusted: dict[str, Any], name: str, **kw: Any) -> int:
    args = {"kmip_ca_certificate": trusted["ca"], "kmip_client_certificate": trusted["cert"],
            "kmip_key_server_hostnames": ["127.0.0.1"], "kmip_key_server_name": name,
            "kmip_key_server_port": kms.port} | kw
    return int(sf.create_key_server_kmip(**args).kmip_key_server.key_server_id)


def _error(fn: Any, *args: Any, **kw: Any) -> ApiServerError:
    with pytest.raises(ApiServerError) as err:
        fn(*args, **kw)
    return err.value


def test_the_seed_setup_procedure(cluster: SealboxProcess, kms: RunningKms,
                                  trusted: dict[str, Any]) -> None:
    sf = cluster.element()
    server_id = _create(sf, kms, trusted, "primary")
    sf.test_key_server_kmip(key_server_id=server_id)
    provider = sf.create_key_provider_kmip(key_provider_name="keys").kmip_key_provider
    assert provider.key_server_ids == [] and provider.key_provider_is_active is False
    sf.add_key_server_to_provider_kmip(key_provider_id=provider.key_provider_id,
                                       key_server_id=server_id)
    sf.test_key_provider_kmip(key_provider_id=provider.key_provider_id)

    got = sf.get_key_server_kmip(key_server_id=server_id).kmip_key_server
    assert got.key_provider_id == provider.key_provider_id
    assert got.kmip_assigned_provider_is_active is False
    assert got.kmip_key_server_hostnames == ["127.0.0.1"] and got.kmip_key_server_port == kms.port
    p = sf.get_key_provider_kmip(key_provider_id=provider.key_provider_id).kmip_key_provider
    assert p.key_server_ids == [server_id] and p.kmip_capabilities == "SSL"
    for method, params in [("GetKeyServerKmip", {"keyServerID": server_id}),
                           ("GetKeyProviderKmip", {"keyProviderID": provider.key_provider_id}),
                           ("ListKeyServersKmip", {}), ("ListKeyProvidersKmip", {})]:
        assert_complete(method, cluster.rpc(method, params)["result"])

    spare = _create(sf, kms, trusted, "spare")
    ids = lambda r: [s.key_server_id for s in r.kmip_key_servers]  # noqa: E731
    assert ids(sf.list_key_servers_kmip(key_provider_id=provider.key_provider_id)) == [server_id]
    assert spare in ids(sf.list_key_servers_kmip(kmip_has_provider_assigned=False))
    assert server_id not in ids(sf.list_key_servers_kmip(kmip_has_provider_assigned=False))
    assert server_id in ids(sf.list_key_servers_kmip(kmip_assigned_provider_is_active=False))
    assert ids(sf.list_key_servers_kmip(kmip_assigned_provider_is_active=True)) == []
    provs = lambda r: [x.key_provider_id for x in r.kmip_key_providers]  # noqa: E731
    assert provider.key_provider_id in provs(
        sf.list_key_providers_kmip(kmip_key_provider_has_server_assigned=True))
    assert provs(sf.list_key_providers_kmip(key_provider_is_active=True)) == []
    # sfcli and the seed send IDs as strings.
    env = cluster.rpc("GetKeyProviderKmip", {"keyProviderID": str(provider.key_provider_id)})
    assert env["result"]["kmipKeyProvider"]["keyServerIDs"] == [server_id]

    # An inactive provider can be deleted; its servers become unassigned.
    sf.delete_key_provider_kmip(key_provider_id=provider.key_provider_id)
    assert sf.get_key_server_kmip(key_server_id=server_id).kmip_key_server.key_provider_id is None
    sf.delete_key_server_kmip(key_server_id=spare)
    assert "does not exist" in _error(sf.get_key_server_kmip, key_server_id=spare).message


def test_private_key_never_leaves_the_cluster(cluster: SealboxProcess,
                                              trusted: dict[str, Any]) -> None:
    keys = list((cluster.data_dir / "keys").glob("*.key"))
    assert len(keys) == 1 and keys[0].stat().st_mode & 0o777 == 0o600
    private = keys[0].read_bytes()
    body = b"".join(private.splitlines()[1:-1])
    haystack = b""
    for path in cluster.data_dir.rglob("*"):
        if path.is_file() and path not in (keys[0], cluster.data_dir / "tls" / "api.key"):
            haystack += path.read_bytes()
    # (The first bytes of every RSA-2048 PKCS#8 key are alike: look for the key's own bytes.)
    assert body[200:260] not in haystack and b"PRIVATE KEY" not in haystack
    sf = cluster.element()
    for result in (sf.get_client_certificate_sign_request(), sf.list_key_servers_kmip()):
        assert b"PRIVATE" not in repr(result).encode()


def test_key_server_down_fails_fast_and_says_so(cluster: SealboxProcess, kms: RunningKms,
                                                trusted: dict[str, Any]) -> None:
    sf = cluster.element()
    server_id = _create(sf, kms, trusted, "down", kmip_key_server_port=closed_port())
    start = time.monotonic()
    err = _error(sf.test_key_server_kmip, key_server_id=server_id)
    assert time.monotonic() - start < 10
    assert err.error_name == "xKmipConnectionRefused"
    assert "refused" in err.message.lower()
    sf.delete_key_server_kmip(key_server_id=server_id)


def test_unresolvable_name_is_named(cluster: SealboxProcess, kms: RunningKms,
                                    trusted: dict[str, Any]) -> None:
    sf = cluster.element()
    server_id = _create(sf, kms, trusted, "nowhere",
                        kmip_key_server_hostnames=["kms.nonexistent.invalid"])
    err = _error(sf.test_key_server_kmip, key_server_id=server_id)
    assert err.error_name == "xKmipNameResolutionFailed"
    assert "kms.nonexistent.invalid" in err.message
    sf.delete_key_server_kmip(key_server_id=server_id)


def test_clustered_server_fails_over_to_second_hostname(
        cluster: SealboxProcess, kms: RunningKms, trusted: dict[str, Any]) -> None:
    sf = cluster.element()
    server_id = _create(sf, kms, trusted, "clustered",
                        kmip_key_server_hostnames=["kms.nonexistent.invalid", "127.0.0.1"])
    sf.test_key_server_kmip(key_server_id=server_id)
    sf.delete_key_server_kmip(key_server_id=server_id)


def test_wrong_ca_means_server_not_trusted(cluster: SealboxProcess, kms: RunningKms,
                                           trusted: dict[str, Any], other_kms_dir: Path) -> None:
    sf = cluster.element()
    other_ca = (other_kms_dir / "ca.pem").read_text()
    server_id = _create(sf, kms, trusted, "wrong-ca", kmip_ca_certificate=other_ca)
    err = _error(sf.test_key_server_kmip, key_server_id=server_id)
    assert err.error_name == "xKmipServerCertificateNotTrusted"
    assert "certificate" in err.message.lower()
    sf.delete_key_server_kmip(key_server_id=server_id)


def test_client_certificate_from_another_ca_is_rejected(
        cluster: SealboxProcess, kms: RunningKms, trusted: dict[str, Any],
        other_kms_dir: Path) -> None:
    sf = cluster.element()
    csr = sf.get_client_certificate_sign_request().client_certificate_sign_request
    foreign = kms_server.sign_csr(other_kms_dir, csr).decode()
    server_id = _create(sf, kms, trusted, "foreign-cert", kmip_client_certificate=foreign)
    err = _error(sf.test_key_server_kmip, key_server_id=server_id)
    assert err.error_name == "xKmipClientCertificateRejected"
    sf.delete_key_server_kmip(key_server_id=server_id)


def test_certificate_for_another_key_is_refused_at_create(
        cluster: SealboxProcess, kms: RunningKms, trusted: dict[str, Any]) -> None:
    sf = cluster.element()
    cert, _key = kms.client_credentials("someone-else")
    err = _error(_create, sf, kms, trusted, "other-key", kmip_client_certificate=cert.decode())
    assert err.error_name == "xInvalidParameter"
    assert "kmipClientCertificate" in err.message and "public key" in err.message


@pytest.mark.parametrize("field,value", [
    ("kmip_ca_certificate", "not a pem"),
    ("kmip_client_certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"),
    ("kmip_key_server_hostnames", []),
    ("kmip_key_server_hostnames", [""]),
    ("kmip_key_server_port", 70000),
    ("kmip_key_server_name", ""),
])
def test_malformed_create_is_refused_and_changes_nothing(
        cluster: SealboxProcess, kms: RunningKms, trusted: dict[str, Any], field: str,
        value: Any) -> None:
    sf = cluster.element()
    before = sf.list_key_servers_kmip().kmip_key_servers
    err = _error(_create, sf, kms, trusted, "bad", **{field: value})
    assert err.error_name == "xInvalidParameter"
    camel = {"kmip_ca_certificate": "kmipCaCertificate",
             "kmip_client_certificate": "kmipClientCertificate",
             "kmip_key_server_hostnames": "kmipKeyServerHostnames",
             "kmip_key_server_port": "kmipKeyServerPort",
             "kmip_key_server_name": "kmipKeyServerName"}[field]
    assert camel in err.message
    assert len(sf.list_key_servers_kmip().kmip_key_servers) == len(before)


def test_server_restart_between_operations(cluster: SealboxProcess, kms: RunningKms,
                                           trusted: dict[str, Any]) -> None:
    sf = cluster.element()
    server_id = _create(sf, kms, trusted, "restarts")
    sf.test_key_server_kmip(key_server_id=server_id)
    kms.restart()
    sf.test_key_server_kmip(key_server_id=server_id)
    sf.delete_key_server_kmip(key_server_id=server_id)


def test_modify_tests_before_committing(cluster: SealboxProcess, kms: RunningKms,
                                        trusted: dict[str, Any]) -> None:
    sf = cluster.element()
    server_id = _create(sf, kms, trusted, "modify-me")
    err = _error(sf.modify_key_server_kmip, key_server_id=server_id,
                 kmip_key_server_port=closed_port())
    assert err.error_name == "xKmipConnectionRefused"
    got = sf.get_key_server_kmip(key_server_id=server_id).kmip_key_server
    assert got.kmip_key_server_port == kms.port  # unchanged
    renamed = sf.modify_key_server_kmip(key_server_id=server_id, kmip_key_server_name="renamed")
    assert renamed.kmip_key_server.kmip_key_server_name == "renamed"
    sf.delete_key_server_kmip(key_server_id=server_id)


def test_add_to_provider_tests_before_committing(cluster: SealboxProcess, kms: RunningKms,
                                                 trusted: dict[str, Any]) -> None:
    sf = cluster.element()
    server_id = _create(sf, kms, trusted, "dead-add", kmip_key_server_port=closed_port())
    pid = sf.create_key_provider_kmip(key_provider_name="dead-provider").kmip_key_provider
    err = _error(sf.add_key_server_to_provider_kmip, key_provider_id=pid.key_provider_id,
                 key_server_id=server_id)
    assert err.error_name == "xKmipConnectionRefused"
    assert sf.get_key_provider_kmip(
        key_provider_id=pid.key_provider_id).kmip_key_provider.key_server_ids == []
    err = _error(sf.test_key_provider_kmip, key_provider_id=pid.key_provider_id)
    assert "no key servers" in err.message
    sf.delete_key_provider_kmip(key_provider_id=pid.key_provider_id)
    sf.delete_key_server_kmip(key_server_id=server_id)


def test_new_key_pair_refused_while_servers_use_it(cluster: SealboxProcess, kms: RunningKms,
                                                   trusted: dict[str, Any]) -> None:
    sf = cluster.element()
    server_id = _create(sf, kms, trusted, "pinned")
    err = _error(sf.create_public_private_key_pair, common_name="again")
    assert err.error_name == "xAPINotPermitted" and str(server_id) in err.message
    sf.delete_key_server_kmip(key_server_id=server_id)
