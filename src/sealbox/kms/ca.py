"""The bundled key server's certificate authority.

A small local CA (ECDSA P-256: with PyKMIP's TLS 1.2 suite it is what gets a forward-secret
ECDHE-ECDSA-AES-GCM cipher; an RSA server key falls back to ``AES128-SHA256``). It signs the
server certificate at ``init`` and client certificates from CSRs later. Files written here hold
private keys and are created 0600 before any byte is written.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sealbox.kmip.certs import CertificateInvalid, load_private_key, parse_certificate
from sealbox.secrets import Secret

CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=825)
CLIENT_VALIDITY = dt.timedelta(days=365)
# Certificates start slightly in the past so that small clock skew does not reject them.
_BACKDATE = dt.timedelta(minutes=5)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file that is 0600 from its creation (never briefly world-readable)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT does not change the mode of an existing file
        os.write(fd, data)
    finally:
        os.close(fd)


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: CertificateIssuerPrivateKeyTypes) -> Secret:
    return Secret(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca(common_name: str = "sealbox kms local CA") -> tuple[x509.Certificate, Secret]:
    """A self-signed CA certificate and its private key."""
    key = new_ec_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return cert, key_pem(key)


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def issue(
    ca_cert: x509.Certificate,
    ca_key: Secret,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    *,
    usage: x509.ObjectIdentifier,
    validity: dt.timedelta,
    sans: Sequence[str] = (),
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """A leaf certificate for ``public_key`` signed by the CA, for server or client ``usage``."""
    signer = load_private_key(ca_key)
    start = not_before or dt.datetime.now(dt.UTC) - _BACKDATE
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(_san(sans), critical=False)
    return builder.sign(signer, hashes.SHA256())


def issue_server(
    ca_cert: x509.Certificate,
    ca_key: Secret,
    names: Sequence[str],
    validity: dt.timedelta = SERVER_VALIDITY,
    not_before: dt.datetime | None = None,
) -> tuple[x509.Certificate, Secret]:
    """A server key and certificate valid for every host name / IP address in ``names``."""
    if not names:
        raise CertificateInvalid("A server certificate needs at least one host name.")
    key = new_ec_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = issue(
        ca_cert,
        ca_key,
        subject,
        key.public_key(),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        validity=validity,
        sans=names,
        not_before=not_before,
    )
    return cert, key_pem(key)


def issue_client(
    ca_cert: x509.Certificate,
    ca_key: Secret,
    common_name: str,
    *,
    validity: dt.timedelta = CLIENT_VALIDITY,
    not_before: dt.datetime | None = None,
) -> tuple[x509.Certificate, Secret]:
    """A client key and certificate (clientAuth); ``validity``/``not_before`` allow expired ones."""
    key = new_ec_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = issue(
        ca_cert,
        ca_key,
        subject,
        key.public_key(),
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        validity=validity,
        not_before=not_before,
    )
    return cert, key_pem(key)


def load_csr(text: str | bytes) -> x509.CertificateSigningRequest:
    """A CSR given as PEM, or as base64 DER (what GetClientCertificateSignRequest returns)."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    data = data.strip()
    try:
        if data.startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            der = base64.b64decode(b"".join(data.split()), validate=True)
            csr = x509.load_der_x509_csr(der)
    except (ValueError, binascii.Error) as exc:
        raise CertificateInvalid("The CSR is neither PEM nor base64 DER.") from exc
    if not csr.is_signature_valid:
        raise CertificateInvalid("The CSR signature does not verify.")
    return csr


def sign_csr(
    ca_cert: x509.Certificate,
    ca_key: Secret,
    csr_text: str | bytes,
    validity: dt.timedelta = CLIENT_VALIDITY,
) -> x509.Certificate:
    """A clientAuth certificate for the CSR's subject and key, whatever extensions it asked for."""
    csr = load_csr(csr_text)
    if not csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        # PyKMIP identifies clients by their CN; without one every object would be orphaned.
        raise CertificateInvalid("The CSR subject has no common name.")
    public_key = csr.public_key()
    return issue(
        ca_cert,
        ca_key,
        csr.subject,
        public_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        validity=validity,
    )


def load_ca(ca_pem_path: Path, ca_key_path: Path) -> tuple[x509.Certificate, Secret]:
    cert = parse_certificate(ca_pem_path.read_bytes())
    return cert, Secret(ca_key_path.read_bytes())
