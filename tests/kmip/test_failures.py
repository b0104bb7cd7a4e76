"""Every way a key server can be unusable, each reported as its own error class and cause.

Real parts only: PyKMIP server processes on loopback, real sockets, real certificates.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from sealbox.kmip import (
    KmipClient,
    KmipClientCertificateRejected,
    KmipConnectionLost,
    KmipConnectionRefused,
    KmipConnectionTimedOut,
    KmipEndpoint,
    KmipError,
    KmipInvalidConfiguration,
    KmipNameResolutionFailed,
    KmipOperationTimedOut,
    KmipServerCertificateNotTrusted,
    KmipTlsHandshakeFailed,
    ProviderClient,
)
from sealbox.kms import server
from sealbox.kms.testing import RunningKms, closed_port, free_port, launch_kms
from sealbox.secrets import Secret
from tests.kmip.conftest import FAST


@pytest.fixture(scope="module")
def other_kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningKms]:
    """A second server with its own CA whose certificate names only 'localhost'."""
    proc = launch_kms(tmp_path_factory.mktemp("kms-other"), names=("localhost",))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections but never says a word (a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


E = TypeVar("E", bound=KmipError)


def _fails(endpoint: KmipEndpoint, error: type[E]) -> E:
    with KmipClient(endpoint) as c, pytest.raises(error) as info:
        c.test_connection()
    return info.value


def test_server_down_is_refused_fast(endpoint: KmipEndpoint) -> None:
    port = closed_port()
    start = time.monotonic()
    err = _fails(replace(endpoint, port=port), KmipConnectionRefused)
    assert time.monotonic() - start < endpoint.connect_timeout
    assert err.element_name == "xKmipConnectionRefused"
    assert f"127.0.0.1:{port}" in err.message and "refused" in err.message
    assert isinstance(err.__cause__, ConnectionRefusedError)


def test_hung_server_times_out_within_the_connect_timeout(
    endpoint: KmipEndpoint, silent_listener: int
) -> None:
    start = time.monotonic()
    err = _fails(
        replace(endpoint, port=silent_listener, connect_timeout=0.5), KmipConnectionTimedOut
    )
    assert 0.4 < time.monotonic() - start < 5.0
    assert "timed out" in err.message and f":{silent_listener}" in err.message


def test_name_resolution_failure(endpoint: KmipEndpoint) -> None:
    err = _fails(replace(endpoint, hostnames=("nonexistent.invalid",)), KmipNameResolutionFailed)
    assert "name resolution failed" in err.message and "nonexistent.invalid" in err.message


def test_server_certificate_from_another_ca_is_not_trusted(
    endpoint: KmipEndpoint, other_kms: RunningKms
) -> None:
    err = _fails(replace(endpoint, ca_pem=other_kms.ca_pem), KmipServerCertificateNotTrusted)
    assert isinstance(err, KmipServerCertificateNotTrusted)
    assert err.reason == KmipServerCertificateNotTrusted.UNKNOWN_CA
    assert "not trusted" in err.message and "not issued by a configured CA" in err.message


def test_ca_bundle_with_the_right_ca_among_others_is_trusted(
    endpoint: KmipEndpoint, other_kms: RunningKms, kms: RunningKms
) -> None:
    bundle = other_kms.ca_pem + kms.ca_pem
    with KmipClient(replace(endpoint, ca_pem=bundle)) as c:
        assert c.test_connection().port == kms.port


def test_hostname_mismatch_is_named(other_kms: RunningKms) -> None:
    # The certificate says 'localhost'; we connect by IP address.
    err = _fails(
        other_kms.endpoint("x", hostnames=("127.0.0.1",), **FAST), KmipServerCertificateNotTrusted
    )
    assert isinstance(err, KmipServerCertificateNotTrusted)
    assert err.reason == KmipServerCertificateNotTrusted.HOSTNAME_MISMATCH
    assert "hostname mismatch" in err.message and "127.0.0.1" in err.message
    with KmipClient(other_kms.endpoint("x", hostnames=("localhost",), **FAST)) as c:
        assert c.test_connection().host == "localhost"


def test_client_certificate_from_another_ca_is_rejected(
    endpoint: KmipEndpoint, other_kms: RunningKms, kms: RunningKms
) -> None:
    foreign_cert, foreign_key = other_kms.client_credentials("intruder")
    ep = replace(endpoint, client_cert_pem=foreign_cert, client_key_pem=foreign_key)
    err = _fails(ep, KmipClientCertificateRejected)
    assert err.element_name == "xKmipClientCertificateRejected"
    assert "rejected the client certificate" in err.message and f":{kms.port}" in err.message


def test_mismatched_client_key_is_a_configuration_error(
    endpoint: KmipEndpoint, kms: RunningKms
) -> None:
    _, other_key = kms.client_credentials("other")
    with pytest.raises(KmipInvalidConfiguration) as info:
        KmipClient(replace(endpoint, client_key_pem=other_key))
    assert info.value.element_name == "xInvalidParameter"


def test_plain_tcp_server_is_a_handshake_failure(endpoint: KmipEndpoint) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        c = KmipClient(replace(endpoint, port=port, connect_timeout=2.0))

        def answer_garbage() -> None:
            conn, _ = s.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        t = threading.Thread(target=answer_garbage)
        t.start()
        with c, pytest.raises(KmipTlsHandshakeFailed) as info:
            c.test_connection()
        t.join(5)
    assert f":{port}" in info.value.message and "TLS handshake" in info.value.message


def test_clustered_server_fails_over_to_its_second_hostname(endpoint: KmipEndpoint) -> None:
    for dead in ("nonexistent.invalid", "127.0.0.2"):
        with KmipClient(replace(endpoint, hostnames=(dead, "127.0.0.1"))) as c:
            uid = c.create_symmetric_key()
            assert len(c.get(uid)) == 32


def test_all_hostnames_dead_reports_the_most_telling_cause(
    endpoint: KmipEndpoint, other_kms: RunningKms
) -> None:
    ep = replace(endpoint, hostnames=("nonexistent.invalid", "127.0.0.1"), ca_pem=other_kms.ca_pem)
    err = _fails(ep, KmipServerCertificateNotTrusted)
    assert "127.0.0.1" in err.message


def test_provider_fails_over_and_creates_exactly_once(
    kms: RunningKms, endpoint: KmipEndpoint
) -> None:
    down = replace(endpoint, port=closed_port())
    name = "provider-once"
    with ProviderClient([down, endpoint]) as provider:
        uid = provider.create_symmetric_key(name)
        assert len(provider.get(uid)) == 32
    with KmipClient(endpoint) as c:
        assert c.locate(name) == [uid]


def test_provider_with_every_server_down_says_so(endpoint: KmipEndpoint) -> None:
    servers = [
        replace(endpoint, port=closed_port()),
        replace(endpoint, hostnames=("nonexistent.invalid",)),
    ]
    with ProviderClient(servers) as provider, pytest.raises(KmipConnectionRefused):
        provider.get("1")


# --- one server that is stopped, restarted and frozen (keeps the others undisturbed) -------


@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningKms]:
    proc = launch_kms(tmp_path_factory.mktemp("kms-restart"))
    try:
        yield proc
    finally:
        proc.stop()


def test_restart_between_operations_reconnects_transparently(restartable: RunningKms) -> None:
    with KmipClient(restartable.endpoint("restart", **FAST)) as c:
        uid = c.create_symmetric_key("before-restart")
        key = c.get(uid)
        restartable.restart()
        assert c.get(uid) == key
        # A non-idempotent operation also works: the dead connection is noticed before sending.
        restartable.restart()
        new = c.create_symmetric_key("after-restart")
        assert c.locate("after-restart") == [new]


def test_server_down_then_back(restartable: RunningKms) -> None:
    with KmipClient(restartable.endpoint("down", **FAST)) as c:
        uid = c.create_symmetric_key()
        restartable.stop()
        with pytest.raises(KmipConnectionRefused):
            c.get(uid)
        restartable.start()
        assert len(c.get(uid)) == 32


def test_frozen_server_times_out_an_operation(restartable: RunningKms) -> None:
    # Register with ordinary timeouts (a loaded machine may be slow), then ask a client with a
    # short operation timeout while the server is frozen.
    ep = restartable.endpoint("frozen", **FAST)
    with KmipClient(ep) as c:
        uid = c.register_secret_data(Secret(b"k" * 32))
    short = replace(ep, operation_timeout=0.5)
    with KmipClient(short) as c:
        c.test_connection()
        assert restartable.process is not None
        os.kill(restartable.process.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(KmipOperationTimedOut) as info:
                c.get(uid)
            assert time.monotonic() - start < 10.0  # bounded, not hung
            assert isinstance(info.value, KmipConnectionLost)
            assert "did not answer Get within 0.5 s" in info.value.message
        finally:
            os.kill(restartable.process.pid, signal.SIGCONT)
    with KmipClient(ep) as c:
        assert c.get(uid) == Secret(b"k" * 32)  # a fresh connection after the timeout


def test_expired_server_certificate_is_named(tmp_path: Path) -> None:
    directory = tmp_path / "kms-expired"
    server.init(directory)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    server.reissue_server_cert(directory, validity=dt.timedelta(days=1), not_before=long_ago)
    expired = RunningKms(directory, free_port())
    expired.start()
    try:
        err = _fails(expired.endpoint("x", **FAST), KmipServerCertificateNotTrusted)
    finally:
        expired.stop()
    assert err.reason == KmipServerCertificateNotTrusted.EXPIRED
    assert "expired" in err.message
