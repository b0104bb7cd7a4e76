"""Typed, frozen configuration of one KMIP key server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sealbox.kmip.errors import KmipInvalidConfiguration
from sealbox.secrets import Secret

DEFAULT_PORT = 5696
DEFAULT_CONNECT_TIMEOUT = 3.0
DEFAULT_OPERATION_TIMEOUT = 5.0


@dataclass(frozen=True)
class KmipEndpoint:
    """One key server: possibly several hostnames of one clustered server, tried in order.

    ``ca_pem`` may hold several concatenated CA certificates. ``client_key_pem`` is a
    :class:`Secret`, so the dataclass ``repr`` never shows it. ``connect_timeout`` bounds the
    TCP connect plus TLS handshake per address; ``operation_timeout`` bounds each send/receive.
    """

    hostnames: tuple[str, ...]
    ca_pem: bytes = field(repr=False)
    client_cert_pem: bytes = field(repr=False)
    client_key_pem: Secret = field(repr=False)
    port: int = DEFAULT_PORT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    operation_timeout: float = DEFAULT_OPERATION_TIMEOUT

    def __post_init__(self) -> None:
        # A list is accepted for convenience and frozen into a tuple.
        hosts = _normalize_hostnames(self.hostnames)
        object.__setattr__(self, "hostnames", hosts)
        for name in ("ca_pem", "client_cert_pem"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, value.encode("ascii", "replace"))
        if not isinstance(self.client_key_pem, Secret):
            raise KmipInvalidConfiguration("The client private key must be given as a Secret.")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise KmipInvalidConfiguration("The key server port must be an integer.")
        if not 0 < self.port < 65536:
            raise KmipInvalidConfiguration("The key server port must be 1-65535.")
        for name in ("connect_timeout", "operation_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < value <= 300:
                raise KmipInvalidConfiguration(f"{name} must be between 0 and 300 seconds.")

    @property
    def label(self) -> str:
        """``host1,host2:port`` for messages."""
        return f"{','.join(self.hostnames)}:{self.port}"


def _normalize_hostnames(hostnames: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(hostnames, str):
        hostnames = [hostnames]
    hosts = tuple(h.strip() for h in hostnames if isinstance(h, str) and h.strip())
    if not hosts or len(hosts) != len(hostnames):
        raise KmipInvalidConfiguration("Each key server hostname must be a non-empty string.")
    for host in hosts:
        if any(c.isspace() for c in host) or "/" in host or len(host) > 253:
            raise KmipInvalidConfiguration("A key server hostname is not valid.")
    return hosts
