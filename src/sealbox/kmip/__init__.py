"""sealbox.kmip: talking KMIP to key servers (connections, mutual TLS, failover, timeouts).

The layer below the cluster: it knows nothing of cluster objects. Every call blocks on the
network; call it from worker threads, never on an asyncio event loop. See ``docs/kmip.md``.
"""

from sealbox.kmip.client import KeyState, KmipClient, ObjectAttributes, ObjectKind, ServerInfo
from sealbox.kmip.config import KmipEndpoint
from sealbox.kmip.errors import (
    KmipClientCertificateRejected,
    KmipConnectionFailed,
    KmipConnectionLost,
    KmipConnectionRefused,
    KmipConnectionTimedOut,
    KmipError,
    KmipInvalidConfiguration,
    KmipNameResolutionFailed,
    KmipObjectNotFound,
    KmipOperationFailed,
    KmipOperationTimedOut,
    KmipPermissionDenied,
    KmipProtocolError,
    KmipServerCertificateNotTrusted,
    KmipTlsHandshakeFailed,
)
from sealbox.kmip.provider import ProviderClient

__all__ = [
    "KeyState",
    "KmipClient",
    "KmipClientCertificateRejected",
    "KmipConnectionFailed",
    "KmipConnectionLost",
    "KmipConnectionRefused",
    "KmipConnectionTimedOut",
    "KmipEndpoint",
    "KmipError",
    "KmipInvalidConfiguration",
    "KmipNameResolutionFailed",
    "KmipObjectNotFound",
    "KmipOperationFailed",
    "KmipOperationTimedOut",
    "KmipPermissionDenied",
    "KmipProtocolError",
    "KmipServerCertificateNotTrusted",
    "KmipTlsHandshakeFailed",
    "ObjectAttributes",
    "ObjectKind",
    "ProviderClient",
    "ServerInfo",
]
