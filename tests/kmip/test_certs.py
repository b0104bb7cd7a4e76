"""Unit tests of the pure-crypto trust helpers (no network)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sealbox.kmip import certs
from sealbox.kms import ca
from sealbox.secrets import Secret


@pytest.fixture(scope="module")
def authority() -> tuple[x509.Certificate, Secret]:
    return ca.make_ca("unit CA")


def test_rsa_key_pair_is_2048_and_private_half_is_a_secret() -> None:
    pair = certs.generate_key_pair()
    assert isinstance(pair.private_key_pem, Secret)
    assert "PRIVATE" not in repr(pair) and "PRIVATE" not in str(pair.private_key_pem)
    assert isinstance(pair.public_key, rsa.RSAPublicKey)
    assert pair.public_key.key_size == 2048
    assert pair.public_key_pem().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_ecdsa_option_gives_p256() -> None:
    pair = certs.generate_key_pair(certs.KeyType.ECDSA_P256)
    assert isinstance(pair.public_key, ec.EllipticCurvePublicKey)
    assert pair.public_key.curve.name == "secp256r1"


@pytest.mark.parametrize("key_type", list(certs.KeyType))
def test_csr_is_signed_by_the_cluster_key(key_type: certs.KeyType) -> None:
    pair = certs.generate_key_pair(key_type)
    subject = certs.Subject("cluster-1", organization="Acme", country="us")
    csr = x509.load_pem_x509_csr(certs.build_csr(subject, pair.private_key_pem))
    assert csr.is_signature_valid
    assert certs.public_key_pem(csr.public_key()) == pair.public_key_pem()
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "cluster-1"
    assert csr.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "US"
    eku = csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku


@pytest.mark.parametrize(
    "subject",
    [
        certs.Subject(""),
        certs.Subject("   "),
        certs.Subject("x" * 65),
        certs.Subject("a", country="USA"),
    ],
)
def test_csr_subject_is_validated(subject: certs.Subject) -> None:
    pair = certs.generate_key_pair(certs.KeyType.ECDSA_P256)
    with pytest.raises(certs.CertificateInvalid) as info:
        certs.build_csr(subject, pair.private_key_pem)
    assert info.value.element_name == "xInvalidParameter"


def test_garbage_private_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(certs.CertificateInvalid) as info:
        certs.load_private_key(Secret(b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n"))
    assert "c2VjcmV0" not in info.value.message


def test_ca_bundle_of_several_certificates(authority: tuple[x509.Certificate, Secret]) -> None:
    other, _ = ca.make_ca("other CA")
    bundle = ca.cert_pem(authority[0]) + b"\n" + ca.cert_pem(other)
    parsed = certs.validate_ca_bundle(bundle)
    assert [c.subject for c in parsed] == [authority[0].subject, other.subject]
    assert len(certs.parse_ca_bundle(bundle.decode())) == 2


@pytest.mark.parametrize(
    "text",
    [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
)
def test_bad_bundles_are_refused(text: bytes) -> None:
    with pytest.raises(certs.CertificateInvalid):
        certs.parse_ca_bundle(text)


def test_truncated_second_certificate_is_refused(
    authority: tuple[x509.Certificate, Secret],
) -> None:
    pem = ca.cert_pem(authority[0])
    with pytest.raises(certs.CertificateInvalid):
        certs.parse_ca_bundle(pem + pem[: len(pem) // 2])


def test_leaf_in_ca_bundle_is_refused(authority: tuple[x509.Certificate, Secret]) -> None:
    leaf, _ = ca.issue_client(*authority, "client")
    with pytest.raises(certs.CertificateInvalid, match="not a CA"):
        certs.validate_ca_bundle(ca.cert_pem(authority[0]) + ca.cert_pem(leaf))


def test_client_certificate_needs_client_auth(authority: tuple[x509.Certificate, Secret]) -> None:
    client, _ = ca.issue_client(*authority, "client")
    assert certs.validate_client_certificate(ca.cert_pem(client)) == client
    server, _ = ca.issue_server(*authority, ["localhost"])
    with pytest.raises(certs.CertificateInvalid, match="clientAuth"):
        certs.validate_client_certificate(ca.cert_pem(server))
    with pytest.raises(certs.CertificateInvalid, match="exactly one"):
        certs.validate_client_certificate(ca.cert_pem(client) * 2)


def test_certificate_matches_only_its_own_key(authority: tuple[x509.Certificate, Secret]) -> None:
    pair = certs.generate_key_pair()
    csr_pem = certs.build_csr(certs.Subject("cluster-1"), pair.private_key_pem)
    cert = ca.sign_csr(*authority, csr_pem)
    assert certs.certificate_matches_key(cert, pair.public_key)
    assert not certs.certificate_matches_key(cert, certs.generate_key_pair().public_key)
    assert certs.common_name(cert) == "cluster-1"


def test_signed_certificate_verifies_against_the_ca(
    authority: tuple[x509.Certificate, Secret],
) -> None:
    pair = certs.generate_key_pair()
    cert = ca.sign_csr(*authority, certs.build_csr(certs.Subject("c"), pair.private_key_pem))
    ca_key = authority[0].public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    ca_key.verify(
        cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
    )
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)


def test_days_until_expiry_and_warning_window(authority: tuple[x509.Certificate, Secret]) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)  # certificates hold whole seconds
    soon, _ = ca.issue_client(*authority, "soon", validity=dt.timedelta(days=10), not_before=now)
    later, _ = ca.issue_client(*authority, "later", validity=dt.timedelta(days=90), not_before=now)
    past, _ = ca.issue_client(
        *authority, "past", validity=dt.timedelta(days=1), not_before=now - dt.timedelta(days=3)
    )
    assert certs.days_until_expiry(soon, now) == 10
    assert certs.days_until_expiry(later, now) == 90
    assert certs.days_until_expiry(past, now) == -2
    assert certs.expiring_within([soon, later, past], days=30, now=now) == [soon, past]
    assert certs.not_after(later) == now + dt.timedelta(days=90)
