"""Mutual TLS to a key server: an SSLContext built in memory, connect, and error translation.

The server is verified against the configured CA bundle *and* the hostname (PyKMIP's own
client checks neither the name nor connects with a timeout). The client private key never
touches disk: ``ssl`` can only load a key from a path, so it is written to an anonymous
memory file (``memfd``) for the duration of one call. Where memfd does not exist, a 0600 file
in a private 0700 directory is used and removed at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import tempfile
import time

from sealbox import files
from sealbox.kmip.certs import CertificateInvalid, validate_ca_bundle, validate_client_certificate
from sealbox.kmip.config import KmipEndpoint
from sealbox.kmip.errors import (
    KmipClientCertificateRejected,
    KmipConnectionFailed,
    KmipConnectionRefused,
    KmipConnectionTimedOut,
    KmipError,
    KmipInvalidConfiguration,
    KmipNameResolutionFailed,
    KmipServerCertificateNotTrusted,
    KmipTlsHandshakeFailed,
)
from sealbox.secrets import Secret

# Forward-secret suites first; KMIP's TLS 1.2 profile mandates TLS_RSA_WITH_AES_128_CBC_SHA256,
# the only suite some servers (PyKMIP with an RSA certificate) offer, so it stays as a last resort.
_CIPHERS = (
    "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:DHE+AESGCM:AES128-SHA256:AES256-SHA256"
    ":!aNULL:!eNULL:!MD5:!SHA1:!DSS"
)
# OpenSSL X509_V_ERR_* codes, grouped by what they tell an administrator.
_VERIFY_HOSTNAME = {62, 64}  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
_VERIFY_EXPIRED = {9, 10}  # CERT_NOT_YET_VALID, CERT_HAS_EXPIRED
# TLS alerts a server sends when it does not accept our certificate.
CLIENT_CERT_ALERTS = {
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "TLSV1_ALERT_ACCESS_DENIED",
    "TLSV1_ALERT_DECRYPT_ERROR",
}


def build_context(endpoint: KmipEndpoint) -> ssl.SSLContext:
    """A client context: TLS 1.2+, server verified by CA and hostname, our certificate loaded."""
    try:
        validate_ca_bundle(endpoint.ca_pem)
        validate_client_certificate(endpoint.client_cert_pem)
    except CertificateInvalid as exc:
        raise KmipInvalidConfiguration(exc.message) from exc
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED on
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(_CIPHERS)
    try:
        context.load_verify_locations(cadata=endpoint.ca_pem.decode("ascii"))
    except (ssl.SSLError, ValueError) as exc:
        raise KmipInvalidConfiguration("The CA certificate bundle could not be loaded.") from exc
    _load_client_chain(context, endpoint.client_cert_pem, endpoint.client_key_pem)
    return context


def _load_client_chain(context: ssl.SSLContext, cert_pem: bytes, key: Secret) -> None:
    try:
        if hasattr(os, "memfd_create"):
            _load_via_memfd(context, cert_pem, key)
        else:
            _load_via_private_dir(context, cert_pem, key)
    except ssl.SSLError as exc:
        # e.g. KEY_VALUES_MISMATCH; the OpenSSL text names no key material.
        raise KmipInvalidConfiguration(
            "The client certificate and private key could not be loaded together "
            f"({exc.reason or 'invalid PEM'})."
        ) from exc


def _load_via_memfd(context: ssl.SSLContext, cert_pem: bytes, key: Secret) -> None:
    fd = os.memfd_create("sealbox-kmip-client", os.MFD_CLOEXEC)
    try:
        files.write_fully(fd, cert_pem.rstrip(b"\n") + b"\n" + key.reveal())
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _load_via_private_dir(context: ssl.SSLContext, cert_pem: bytes, key: Secret) -> None:
    directory = tempfile.mkdtemp(prefix="sealbox-kmip-")  # created 0700
    try:
        path = os.path.join(directory, "client.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            files.write_fully(fd, cert_pem.rstrip(b"\n") + b"\n" + key.reveal())
        finally:
            os.close(fd)
        context.load_cert_chain(path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def connect(
    context: ssl.SSLContext,
    host: str,
    port: int,
    timeout: float,
    session: ssl.SSLSession | None = None,
) -> ssl.SSLSocket:
    """A verified TLS connection to host:port; raises a :class:`KmipConnectionFailed` subclass.

    Every address the name resolves to is tried; ``timeout`` bounds each TCP connect and the
    handshake after it. Name resolution itself is bounded by the system resolver's timeouts.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise KmipNameResolutionFailed(
            f"Key server {host}:{port}: name resolution failed for '{host}'.", host, port
        ) from exc
    errors: list[KmipError] = []
    for family, kind, proto, _, addr in infos:
        try:
            return _connect_one(context, host, port, (family, kind, proto, addr), timeout, session)
        except KmipConnectionFailed as exc:
            errors.append(exc)
            if exc.rank >= KmipClientCertificateRejected.rank:
                break  # a certificate problem will not change with another address
    raise max(errors, key=lambda e: e.rank)


def _connect_one(
    context: ssl.SSLContext,
    host: str,
    port: int,
    target: tuple[int, int, int, tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes]],
    timeout: float,
    session: ssl.SSLSession | None,
) -> ssl.SSLSocket:
    family, kind, proto, addr = target
    deadline = time.monotonic() + timeout
    sock = socket.socket(family, kind, proto)
    try:
        sock.settimeout(timeout)
        sock.connect(addr)
        # Requests are small and answered at once: Nagle's delay would only add latency.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(max(deadline - time.monotonic(), 0.05))
        tls = context.wrap_socket(sock, server_hostname=host, session=session)
    except (OSError, ssl.SSLError) as exc:
        sock.close()
        raise classify_connect_error(exc, host, port, timeout) from exc
    return tls


def classify_connect_error(
    exc: BaseException, host: str, port: int, timeout: float
) -> KmipConnectionFailed:
    """The sealbox error for a failed connect or handshake (``exc`` is kept by the caller)."""
    where = f"key server {host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _untrusted(exc, host, port)
    if isinstance(exc, ssl.SSLError) and (exc.reason or "") in CLIENT_CERT_ALERTS:
        alert = (exc.reason or "").split("ALERT_")[-1].replace("_", " ").lower()
        return KmipClientCertificateRejected(
            f"The {where} rejected the client certificate (TLS alert: {alert}).", host, port
        )
    if isinstance(exc, ssl.SSLError):
        return KmipTlsHandshakeFailed(
            f"TLS handshake with {where} failed ({exc.reason or 'protocol error'}).", host, port
        )
    if isinstance(exc, TimeoutError):
        return KmipConnectionTimedOut(
            f"Connection to {where} timed out after {timeout:g} s.", host, port
        )
    if isinstance(exc, ConnectionRefusedError):
        return KmipConnectionRefused(f"Connection to {where} was refused.", host, port)
    if isinstance(exc, ConnectionResetError):
        # A server that closes during the handshake usually disliked our certificate.
        return KmipClientCertificateRejected(
            f"The {where} closed the connection during the TLS handshake "
            "(client certificate probably rejected).",
            host,
            port,
        )
    reason = getattr(exc, "strerror", None) or exc.__class__.__name__
    return KmipConnectionFailed(f"Connection to {where} failed ({reason}).", host, port)


def _untrusted(
    exc: ssl.SSLCertVerificationError, host: str, port: int
) -> KmipServerCertificateNotTrusted:
    code = exc.verify_code
    if code in _VERIFY_HOSTNAME:
        reason = KmipServerCertificateNotTrusted.HOSTNAME_MISMATCH
        detail = f"it is not valid for the name '{host}' (hostname mismatch)"
    elif code in _VERIFY_EXPIRED:
        reason = KmipServerCertificateNotTrusted.EXPIRED
        detail = "it has expired or is not yet valid"
    else:
        reason = KmipServerCertificateNotTrusted.UNKNOWN_CA
        detail = f"it is not issued by a configured CA ({exc.verify_message})"
    return KmipServerCertificateNotTrusted(
        f"The certificate of key server {host}:{port} is not trusted: {detail}.",
        host,
        port,
        reason=reason,
    )


def close_quietly(sock: ssl.SSLSocket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.close()
