"""Testing key servers for real: a TLS connection with both certificates checked and a KMIP
exchange (DiscoverVersions and Query). Failures are the adapter's errors, which say whether
name resolution, the connection, the server's certificate, the client certificate or KMIP
itself failed."""

from __future__ import annotations

from collections.abc import Sequence

from sealbox.errors import SealboxError
from sealbox.kmip.client import KmipClient, ServerInfo
from sealbox.kmip.config import KmipEndpoint


class KeyProviderTestFailed(SealboxError):
    element_name = "xKmipKeyProviderTestFailed"


def test_endpoint(endpoint: KmipEndpoint) -> ServerInfo:
    with KmipClient(endpoint) as client:
        return client.test_connection()


def test_endpoints(provider_id: int, named: Sequence[tuple[int, KmipEndpoint]]) -> None:
    """Test every server of a provider; fail naming each server that failed and why."""
    failures: list[str] = []
    for server_id, endpoint in named:
        try:
            test_endpoint(endpoint)
        except SealboxError as e:
            failures.append(f"key server {server_id}: {e.message}")
    if failures:
        raise KeyProviderTestFailed(
            f"Key provider {provider_id} failed its test ({len(failures)} of {len(named)} "
            f"servers): " + "; ".join(failures)
        )
