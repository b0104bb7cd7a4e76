"""The key-server contract, run against a real PyKMIP server over mutual TLS.

Every test runs twice: through a single-server ``KmipClient`` and through a ``ProviderClient``
(whose first server is down), because both are entry points the cluster uses.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Protocol

import pytest

from sealbox.kmip import (
    KeyState,
    KmipClient,
    KmipEndpoint,
    KmipObjectNotFound,
    KmipOperationFailed,
    ObjectKind,
    ProviderClient,
    ServerInfo,
)
from sealbox.kms.testing import RunningKms, closed_port
from sealbox.secrets import Secret
from tests.kmip.conftest import FAST


class KeySource(Protocol):
    def test_connection(self) -> ServerInfo: ...
    def create_symmetric_key(self, name: str | None = None) -> str: ...
    def register_secret_data(self, data: Secret, name: str | None = None) -> str: ...
    def get(self, uid: str) -> Secret: ...
    def locate(self, name: str | None = None, kind: ObjectKind | None = None) -> list[str]: ...
    def revoke(self, uid: str, compromised: bool = False) -> None: ...
    def destroy(self, uid: str) -> None: ...
    def close(self) -> None: ...


@pytest.fixture(params=["server", "provider"])
def source(
    request: pytest.FixtureRequest, kms: RunningKms, endpoint: KmipEndpoint
) -> Iterator[KeySource]:
    src: KeySource
    if request.param == "server":
        src = KmipClient(endpoint)
    else:
        dead = kms.endpoint("sealbox-test", **FAST)
        dead = KmipEndpoint(
            hostnames=dead.hostnames,
            ca_pem=dead.ca_pem,
            client_cert_pem=dead.client_cert_pem,
            client_key_pem=dead.client_key_pem,
            port=closed_port(),
            **FAST,
        )
        src = ProviderClient([dead, endpoint])
    try:
        yield src
    finally:
        src.close()


def test_connection_test_exchanges_discover_versions_and_query(
    source: KeySource, kms: RunningKms
) -> None:
    info = source.test_connection()
    assert info.port == kms.port
    assert "1.2" in info.protocol_versions
    assert {"CREATE", "GET", "ACTIVATE", "REVOKE", "DESTROY", "LOCATE"} <= set(info.operations)
    assert info.vendor and "PyKMIP" in info.vendor


def test_create_activates_an_aes256_key_that_get_returns(
    source: KeySource, client: KmipClient
) -> None:
    uid = source.create_symmetric_key("mk-contract")
    key = source.get(uid)
    assert isinstance(key, Secret)
    assert len(key) == 32
    assert source.get(uid) == key  # stable: the same bytes every time
    attrs = client.get_attributes(uid)
    assert (attrs.state, attrs.kind, attrs.name) == (
        KeyState.ACTIVE,
        ObjectKind.SYMMETRIC_KEY,
        "mk-contract",
    )


def test_each_create_makes_a_new_key(source: KeySource) -> None:
    a, b = source.create_symmetric_key(), source.create_symmetric_key()
    assert a != b
    assert source.get(a) != source.get(b)


def test_registered_secret_data_round_trips(source: KeySource, client: KmipClient) -> None:
    ak = Secret(bytes(range(32)))
    uid = source.register_secret_data(ak, "ak-drive-7")
    assert source.get(uid) == ak
    attrs = client.get_attributes(uid)
    assert (attrs.state, attrs.kind) == (KeyState.ACTIVE, ObjectKind.SECRET_DATA)


def test_locate_by_name_and_kind(source: KeySource) -> None:
    # Unique per run: the key server outlives this test, and id(source) may name the same
    # address in both parametrizations (the first client is freed before the second).
    name = f"locate-{uuid.uuid4().hex}"
    key = source.create_symmetric_key(name)
    secret = source.register_secret_data(Secret(b"s" * 16), name + "-ak")
    assert source.locate(name) == [key]
    assert source.locate(name + "-missing") == []
    assert key in source.locate(kind=ObjectKind.SYMMETRIC_KEY)
    assert secret not in source.locate(kind=ObjectKind.SYMMETRIC_KEY)
    assert secret in source.locate(kind=ObjectKind.SECRET_DATA)


def test_revoke_then_destroy_then_get_is_not_found(source: KeySource, client: KmipClient) -> None:
    uid = source.create_symmetric_key()
    source.revoke(uid)
    assert client.get_state(uid) is KeyState.DEACTIVATED
    source.destroy(uid)
    with pytest.raises(KmipObjectNotFound) as info:
        source.get(uid)
    err = info.value
    assert (err.element_name, err.reason, err.operation) == (
        "xKmipObjectNotFound",
        "ITEM_NOT_FOUND",
        "Get",
    )
    assert f"127.0.0.1:{client.endpoint.port}" in err.message
    assert isinstance(err.__cause__, Exception)


def test_destroying_an_active_key_is_refused_with_its_kmip_reason(source: KeySource) -> None:
    uid = source.create_symmetric_key()
    with pytest.raises(KmipOperationFailed) as info:
        source.destroy(uid)
    assert info.value.status == "OPERATION_FAILED"
    assert info.value.reason == "PERMISSION_DENIED"
    assert source.get(uid)  # still there


def test_other_identity_cannot_see_our_keys(kms: RunningKms, client: KmipClient) -> None:
    uid = client.create_symmetric_key("private")
    with KmipClient(kms.endpoint("someone-else", **FAST)) as other:
        assert other.locate("private") == []
        with pytest.raises(KmipOperationFailed) as info:
            other.get(uid)
    assert info.value.reason == "PERMISSION_DENIED"


def test_connection_is_reused_and_thread_safe(client: KmipClient) -> None:
    uid = client.create_symmetric_key()
    expected = client.get(uid)
    results: list[bool] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(10):
                results.append(client.get(uid) == expected)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert results == [True] * 40


def test_key_bytes_never_reach_the_logs(
    client: KmipClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    uid = client.create_symmetric_key("logged")
    key = client.get(uid).reveal()
    ak = bytes(range(100, 132))
    client.register_secret_data(Secret(ak), "logged-ak")
    text = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    for secret in (key, ak):
        assert secret.hex() not in text
        assert repr(secret) not in text
