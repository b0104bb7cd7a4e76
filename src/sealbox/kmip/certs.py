"""Pure-crypto helpers for the trust a cluster needs with its key servers.

The cluster holds one key pair; it sends a CSR for it to the key server's CA, gets back a client
certificate, and trusts the key servers through a CA bundle. Everything here is pure computation
over ``cryptography`` objects: no files, no network, no cluster state. Private keys only ever
leave this module as :class:`~sealbox.secrets.Secret` PEM bytes.

Invalid input raises :class:`CertificateInvalid` (an ``xInvalidParameter``), whose message names
what is wrong but never echoes the input.
"""

from __future__ import annotations

import datetime as dt
import enum
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sealbox.errors import InvalidParameter
from sealbox.secrets import Secret

# Longest Element allows for a CN; RFC 5280 upper bound for commonName.
_MAX_CN = 64
_PEM_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"


class CertificateInvalid(InvalidParameter):
    """A certificate, CSR, key or subject given to sealbox is not usable."""


class KeyType(enum.Enum):
    RSA_2048 = "RSA-2048"
    ECDSA_P256 = "ECDSA-P256"


@dataclass(frozen=True)
class KeyPair:
    """The cluster's key pair: the private half only as a redacting :class:`Secret`."""

    private_key_pem: Secret
    public_key: PublicKeyTypes

    def public_key_pem(self) -> bytes:
        return public_key_pem(self.public_key)


def generate_key_pair(key_type: KeyType = KeyType.RSA_2048) -> KeyPair:
    """A fresh key pair; RSA 2048 by default because every KMIP server accepts it."""
    private: CertificateIssuerPrivateKeyTypes
    if key_type is KeyType.ECDSA_P256:
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyPair(private_key_pem=Secret(pem), public_key=private.public_key())


def load_private_key(pem: Secret) -> CertificateIssuerPrivateKeyTypes:
    """The signing key held in ``pem`` (RSA or EC, unencrypted PKCS#8 or traditional PEM)."""
    try:
        key = serialization.load_pem_private_key(pem.reveal(), password=None)
    except (ValueError, TypeError) as exc:
        # The cause is dropped from the message: it could quote key material.
        raise CertificateInvalid("The private key is not a valid unencrypted PEM key.") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertificateInvalid("The private key must be RSA or ECDSA.")
    return key


def public_key_pem(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class Subject:
    """A certificate subject; only the common name is required."""

    common_name: str
    organization: str | None = None
    organizational_unit: str | None = None
    country: str | None = None
    locality: str | None = None
    state: str | None = None
    email_address: str | None = None

    def to_x509(self) -> x509.Name:
        """The X.509 name; CertificateInvalid names the Element parameter that is wrong."""
        cn = self.common_name.strip()
        if not cn or len(cn) > _MAX_CN:
            raise CertificateInvalid(
                f"Invalid parameter 'commonName': it must be 1 to {_MAX_CN} characters.")
        country = self.country.strip() if self.country else None
        if country and (len(country) != 2 or not (country.isascii() and country.isalpha())):
            raise CertificateInvalid(
                "Invalid parameter 'country': it must be a two-letter ISO 3166 code such as "
                f"'US', got {ascii(self.country)[:40]}.")
        email = self.email_address.strip() if self.email_address else None
        if email and not (email.isascii() and "@" in email.strip("@")):
            # an X.509 emailAddress is an IA5String: ASCII only
            raise CertificateInvalid(
                "Invalid parameter 'emailAddress': it must be an ASCII e-mail address, got "
                f"{ascii(self.email_address)[:80]}.")
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        optional = (
            (NameOID.ORGANIZATION_NAME, self.organization),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, self.organizational_unit),
            (NameOID.LOCALITY_NAME, self.locality),
            (NameOID.STATE_OR_PROVINCE_NAME, self.state),
            (NameOID.COUNTRY_NAME, country.upper() if country else None),
            (NameOID.EMAIL_ADDRESS, email),
        )
        for oid, value in optional:
            if value is not None and value.strip():
                attrs.append(x509.NameAttribute(oid, value.strip()))
        return x509.Name(attrs)


def build_csr(subject: Subject, private_key_pem: Secret) -> bytes:
    """A PEM certificate signing request for ``subject``, signed by the given private key."""
    key = load_private_key(private_key_pem)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject.to_x509())
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def parse_certificate(pem: bytes | str) -> x509.Certificate:
    """Exactly one PEM certificate."""
    certs = parse_ca_bundle(pem)
    if len(certs) != 1:
        raise CertificateInvalid("Expected exactly one PEM certificate.")
    return certs[0]


def parse_ca_bundle(pem: bytes | str) -> list[x509.Certificate]:
    """All certificates of a PEM bundle (several concatenated certificates); at least one."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    if data.count(_PEM_CERT_BEGIN) == 0:
        raise CertificateInvalid("No PEM certificate found.")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertificateInvalid("A PEM certificate could not be parsed.") from exc
    if len(certs) != data.count(_PEM_CERT_BEGIN):
        raise CertificateInvalid("A PEM certificate could not be parsed.")
    return certs


def validate_ca_bundle(pem: bytes | str) -> list[x509.Certificate]:
    """A bundle usable as trust anchors: every certificate is a CA certificate."""
    certs = parse_ca_bundle(pem)
    for index, cert in enumerate(certs):
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            # Old self-signed roots may lack the extension; accept them only if self-issued.
            if cert.issuer == cert.subject:
                continue
            raise CertificateInvalid(
                f"Certificate {index + 1} of the bundle is not a CA."
            ) from None
        if not constraints.ca:
            raise CertificateInvalid(f"Certificate {index + 1} of the bundle is not a CA.")
    return certs


def validate_client_certificate(pem: bytes | str) -> x509.Certificate:
    """A single certificate that a KMIP server will accept for TLS client authentication."""
    cert = parse_certificate(pem)
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    # PyKMIP (and most KMIP servers) refuse client certificates without clientAuth.
    if usages is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise CertificateInvalid("The client certificate lacks the clientAuth key usage.")
    return cert


def certificate_matches_key(cert: x509.Certificate, public_key: PublicKeyTypes) -> bool:
    """Whether the certificate certifies exactly this public key."""
    ours = public_key_pem(public_key)
    theirs = public_key_pem(cert.public_key())
    return hmac.compare_digest(ours, theirs)


def not_after(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_after_utc


def days_until_expiry(cert: x509.Certificate, now: dt.datetime | None = None) -> int:
    """Whole days left (negative once expired); partial days round down."""
    now = now or dt.datetime.now(dt.UTC)
    return (cert.not_valid_after_utc - now).days


def expiring_within(
    certs: Sequence[x509.Certificate], days: int = 30, now: dt.datetime | None = None
) -> list[x509.Certificate]:
    """Those of ``certs`` that expire in fewer than ``days`` days (or have expired)."""
    return [c for c in certs if days_until_expiry(c, now) < days]


def common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return None
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
