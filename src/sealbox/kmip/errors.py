"""Errors of the KMIP adapter: every PyKMIP, socket and TLS failure becomes one of these.

Each says *which* failure it was and names the key server as ``host:port``; messages are safe
to show a client (no key bytes, no wire payloads). The original exception is kept as
``__cause__`` for the log.

    KmipError                           xKmipError
    ├── KmipConnectionFailed            xKmipConnectionFailed       (nothing was sent)
    │   ├── KmipNameResolutionFailed    xKmipNameResolutionFailed
    │   ├── KmipConnectionRefused       xKmipConnectionRefused
    │   ├── KmipConnectionTimedOut      xKmipConnectionTimedOut
    │   ├── KmipTlsHandshakeFailed      xKmipTlsHandshakeFailed
    │   ├── KmipServerCertificateNotTrusted  xKmipServerCertificateNotTrusted
    │   └── KmipClientCertificateRejected    xKmipClientCertificateRejected
    ├── KmipConnectionLost              xKmipConnectionLost         (mid-operation)
    │   └── KmipOperationTimedOut       xKmipOperationTimedOut
    ├── KmipProtocolError               xKmipProtocolError
    └── KmipOperationFailed             xKmipOperationFailed        (the server said no)
        ├── KmipObjectNotFound          xKmipObjectNotFound         (ITEM_NOT_FOUND)
        └── KmipPermissionDenied        xKmipPermissionDenied       (PERMISSION_DENIED)

``KmipConnectionFailed`` means the request never reached the server, so trying another
hostname or key server is always safe; ``KmipConnectionLost`` means it may have.
"""

from __future__ import annotations

from typing import ClassVar

from sealbox.errors import InvalidParameter, SealboxError


class KmipInvalidConfiguration(InvalidParameter):
    """A key server endpoint's settings are unusable (bad PEM, no hostname, bad port…)."""


class KmipError(SealboxError):
    element_name = "xKmipError"
    # When every hostname/server fails, the most telling failure is reported: a certificate
    # problem needs an administrator, a refused connection may just be a server being down.
    rank: ClassVar[int] = 0

    def __init__(self, message: str, host: str = "", port: int = 0) -> None:
        super().__init__(message)
        self.host = host
        self.port = port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class KmipConnectionFailed(KmipError):
    element_name = "xKmipConnectionFailed"
    rank = 1


class KmipNameResolutionFailed(KmipConnectionFailed):
    element_name = "xKmipNameResolutionFailed"
    rank = 2


class KmipConnectionRefused(KmipConnectionFailed):
    element_name = "xKmipConnectionRefused"
    rank = 3


class KmipConnectionTimedOut(KmipConnectionFailed):
    element_name = "xKmipConnectionTimedOut"
    rank = 4


class KmipServerCertificateNotTrusted(KmipConnectionFailed):
    """The server's certificate failed verification; ``reason`` says how when known."""

    element_name = "xKmipServerCertificateNotTrusted"
    rank = 7
    HOSTNAME_MISMATCH: ClassVar[str] = "hostname mismatch"
    UNKNOWN_CA: ClassVar[str] = "not issued by a configured CA"
    EXPIRED: ClassVar[str] = "expired or not yet valid"

    def __init__(self, message: str, host: str = "", port: int = 0, reason: str = "") -> None:
        super().__init__(message, host, port)
        self.reason = reason


class KmipTlsHandshakeFailed(KmipConnectionFailed):
    """TLS could not be negotiated (no shared version or cipher, not a TLS server…)."""

    element_name = "xKmipTlsHandshakeFailed"
    rank = 5


class KmipClientCertificateRejected(KmipConnectionFailed):
    element_name = "xKmipClientCertificateRejected"
    rank = 6


class KmipConnectionLost(KmipError):
    """The connection broke during an operation; a non-idempotent one may have taken effect."""

    element_name = "xKmipConnectionLost"
    rank = 5


class KmipOperationTimedOut(KmipConnectionLost):
    """The server did not answer within the operation timeout; the connection is dropped."""

    element_name = "xKmipOperationTimedOut"


class KmipProtocolError(KmipError):
    element_name = "xKmipProtocolError"
    rank = 5


class KmipOperationFailed(KmipError):
    """The server answered with a failure; ``status``/``reason`` are KMIP enum names."""

    element_name = "xKmipOperationFailed"
    rank = 8

    def __init__(
        self,
        message: str,
        host: str = "",
        port: int = 0,
        *,
        operation: str = "",
        status: str = "",
        reason: str = "",
    ) -> None:
        super().__init__(message, host, port)
        self.operation = operation
        self.status = status
        self.reason = reason


class KmipObjectNotFound(KmipOperationFailed):
    element_name = "xKmipObjectNotFound"


class KmipPermissionDenied(KmipOperationFailed):
    element_name = "xKmipPermissionDenied"


def operation_failed(
    host: str, port: int, operation: str, status: str, reason: str, server_message: str
) -> KmipOperationFailed:
    """The error for a KMIP failure result, the class chosen by the result reason."""
    cls: type[KmipOperationFailed] = {
        "ITEM_NOT_FOUND": KmipObjectNotFound,
        "PERMISSION_DENIED": KmipPermissionDenied,
    }.get(reason, KmipOperationFailed)
    # The server's own text is kept short: it is server-controlled and goes to clients.
    detail = f" ({server_message[:200]})" if server_message else ""
    return cls(
        f"KMIP {operation} failed on key server {host}:{port}: {status} {reason}{detail}",
        host,
        port,
        operation=operation,
        status=status,
        reason=reason,
    )
