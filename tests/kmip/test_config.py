"""Endpoint validation and the pinned table of KMIP error names."""

from __future__ import annotations

from dataclasses import replace

import pytest

import sealbox.kmip as kmip
from sealbox.errors import InvalidParameter, SealboxError
from sealbox.kmip import KmipEndpoint, KmipInvalidConfiguration
from sealbox.kms import ca
from sealbox.secrets import Secret


@pytest.fixture(scope="module")
def valid() -> KmipEndpoint:
    authority = ca.make_ca("cfg CA")
    cert, key = ca.issue_client(*authority, "cfg")
    return KmipEndpoint(
        hostnames=("kmip.example.com",),
        ca_pem=ca.cert_pem(authority[0]),
        client_cert_pem=ca.cert_pem(cert),
        client_key_pem=key,
    )


def test_defaults_and_list_of_hostnames(valid: KmipEndpoint) -> None:
    assert (valid.port, valid.connect_timeout, valid.operation_timeout) == (5696, 3.0, 5.0)
    ep = replace(valid, hostnames=[" a.example ", "b.example"])  # type: ignore[arg-type]
    assert ep.hostnames == ("a.example", "b.example")
    assert ep.label == "a.example,b.example:5696"


def test_repr_never_shows_key_material(valid: KmipEndpoint) -> None:
    text = repr(valid)
    assert "PRIVATE" not in text and "CERTIFICATE" not in text
    assert "kmip.example.com" in text


@pytest.mark.parametrize(
    "change",
    [
        {"hostnames": ()},
        {"hostnames": ("",)},
        {"hostnames": ("a b",)},
        {"port": 0},
        {"port": 70000},
        {"port": True},
        {"connect_timeout": 0},
        {"operation_timeout": -1},
        {"client_key_pem": b"-----BEGIN PRIVATE KEY-----"},
    ],
)
def test_invalid_settings_are_refused(valid: KmipEndpoint, change: dict[str, object]) -> None:
    with pytest.raises(KmipInvalidConfiguration) as info:
        replace(valid, **change)  # type: ignore[arg-type]
    assert isinstance(info.value, InvalidParameter)
    assert info.value.element_name == "xInvalidParameter"


@pytest.mark.parametrize(
    "change",
    [
        {"ca_pem": b"not pem"},
        {"client_cert_pem": b"not pem"},
        {"client_key_pem": Secret(b"not a key")},
    ],
)
def test_unusable_pem_fails_when_the_client_is_built(
    valid: KmipEndpoint, change: dict[str, object]
) -> None:
    with pytest.raises(KmipInvalidConfiguration) as info:
        kmip.KmipClient(replace(valid, **change))  # type: ignore[arg-type]
    assert "not a key" not in info.value.message


def test_client_with_valid_pem_is_built_without_network(valid: KmipEndpoint) -> None:
    with kmip.KmipClient(valid) as client:
        assert client.endpoint is valid


ERROR_NAMES = {
    "KmipError": "xKmipError",
    "KmipConnectionFailed": "xKmipConnectionFailed",
    "KmipNameResolutionFailed": "xKmipNameResolutionFailed",
    "KmipConnectionRefused": "xKmipConnectionRefused",
    "KmipConnectionTimedOut": "xKmipConnectionTimedOut",
    "KmipTlsHandshakeFailed": "xKmipTlsHandshakeFailed",
    "KmipServerCertificateNotTrusted": "xKmipServerCertificateNotTrusted",
    "KmipClientCertificateRejected": "xKmipClientCertificateRejected",
    "KmipConnectionLost": "xKmipConnectionLost",
    "KmipOperationTimedOut": "xKmipOperationTimedOut",
    "KmipProtocolError": "xKmipProtocolError",
    "KmipOperationFailed": "xKmipOperationFailed",
    "KmipObjectNotFound": "xKmipObjectNotFound",
    "KmipPermissionDenied": "xKmipPermissionDenied",
    "KmipInvalidConfiguration": "xInvalidParameter",
}


def test_error_name_table_is_pinned() -> None:
    exported = {
        name: getattr(kmip, name).element_name
        for name in kmip.__all__
        if isinstance(getattr(kmip, name), type) and issubclass(getattr(kmip, name), SealboxError)
    }
    assert exported == ERROR_NAMES


def test_failover_safe_errors_are_connection_failures() -> None:
    for cls in (
        kmip.KmipNameResolutionFailed,
        kmip.KmipConnectionRefused,
        kmip.KmipConnectionTimedOut,
        kmip.KmipTlsHandshakeFailed,
        kmip.KmipServerCertificateNotTrusted,
        kmip.KmipClientCertificateRejected,
    ):
        assert issubclass(cls, kmip.KmipConnectionFailed)
    assert not issubclass(kmip.KmipConnectionLost, kmip.KmipConnectionFailed)
    assert issubclass(kmip.KmipOperationTimedOut, kmip.KmipConnectionLost)
    err = kmip.KmipObjectNotFound("m", "h", 1, operation="Get", status="S", reason="R")
    assert err.to_element() == {"code": 500, "name": "xKmipObjectNotFound", "message": "m"}
    assert err.address == "h:1"
