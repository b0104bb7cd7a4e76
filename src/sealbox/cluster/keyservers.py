"""KMIP key servers and key providers, as the Element API manages them.

A *key server* holds what it takes to talk to one KMIP server (possibly several hostnames of one
clustered server); a *key provider* is a named source of keys holding one or more servers, tried
in order. A provider is *active* while keys it provides are in use (the software-encryption
master key, drive authentication keys): then it cannot be deleted and its last server cannot be
removed, because the cluster would lose the way to its keys.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sealbox.cluster.clock import now_iso
from sealbox.cluster.trust import Identity, TrustService
from sealbox.errors import (
    Exists,
    InvalidParameter,
    KeyProviderNotFound,
    KeyServerNotFound,
    NotPermitted,
)
from sealbox.kmip.certs import (
    certificate_matches_key,
    validate_ca_bundle,
    validate_client_certificate,
)
from sealbox.kmip.config import KmipEndpoint
from sealbox.store.base import ConfigStore, Doc, Txn

SERVERS = "keyservers"
PROVIDERS = "keyproviders"


@dataclass(frozen=True)
class Timeouts:
    connect: float = 3.0
    operation: float = 5.0


@dataclass(frozen=True)
class ServerChange:
    """The fields of Create/ModifyKeyServerKmip; None means unchanged."""

    name: str | None = None
    hostnames: Sequence[str] | None = None
    port: int | None = None
    ca_pem: str | None = None
    client_cert_pem: str | None = None


def get_server(txn: Txn, server_id: int) -> Doc:
    doc = txn.get(SERVERS, server_id)
    if doc is None:
        raise KeyServerNotFound(f"KeyServerID {server_id} does not exist.")
    return doc


def get_provider(txn: Txn, provider_id: int) -> Doc:
    doc = txn.get(PROVIDERS, provider_id)
    if doc is None:
        raise KeyProviderNotFound(f"KeyProviderID {provider_id} does not exist.")
    return doc


def is_active(provider: Doc) -> bool:
    return bool(provider["uses"])


def _check_name(name: str, param: str, taken: list[str]) -> str:
    name = name.strip()
    if not name or len(name) > 128:
        raise InvalidParameter(f"Invalid parameter '{param}': give a name of 1-128 characters.")
    if name in taken:
        raise Exists(f"A {param[:-4] if param.endswith('Name') else param} named {name!r} "
                     "already exists; choose another name.")
    return name


def _check_hostnames(hostnames: Sequence[str]) -> list[str]:
    if isinstance(hostnames, str):  # the SDK sends a bare string as-is
        hostnames = [hostnames]
    clean = [h.strip() for h in hostnames]
    if not clean:
        raise InvalidParameter(
            "Invalid parameter 'kmipKeyServerHostnames': give one or more hostnames or IP "
            "addresses."
        )
    for i, host in enumerate(clean):
        if not _is_host(host):
            # ascii(): the text may hold control characters or lone surrogates
            raise InvalidParameter(
                f"Invalid parameter 'kmipKeyServerHostnames[{i}]': {ascii(host)[:80]} is not a "
                "hostname (letters, digits and '-' in dot-separated labels) or an IP address; "
                "give the port in kmipKeyServerPort."
            )
    return clean


_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", re.ASCII)


def _is_host(host: str) -> bool:
    """An IPv4 or IPv6 address, or a DNS name as RFC 1123 allows it. A name whose last label
    is all digits is neither ('999.999.999.999'): no top-level domain is numeric. Caught here,
    a typo is refused when it is made instead of failing as a name lookup at the next unlock."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    return (0 < len(name) <= 253 and all(_LABEL.match(label) for label in labels)
            and not labels[-1].isdigit())


def _check_certs(doc: Doc, ident: Identity) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        validate_ca_bundle(doc["caPem"])
    except InvalidParameter as e:
        raise InvalidParameter(f"Invalid parameter 'kmipCaCertificate': {e.message}") from e
    try:
        cert = validate_client_certificate(doc["clientCertPem"])
    except InvalidParameter as e:
        raise InvalidParameter(f"Invalid parameter 'kmipClientCertificate': {e.message}") from e
    if not certificate_matches_key(cert, load_pem_public_key(ident.public_key_pem)):
        raise InvalidParameter(
            "Invalid parameter 'kmipClientCertificate': it was not issued for the cluster's "
            "current public key. Get a CSR with GetClientCertificateSignRequest and have the "
            "key server's CA sign it."
        )


def apply_change(txn: Txn, doc: Doc, change: ServerChange, ident: Identity) -> Doc:
    """``doc`` with ``change`` applied and validated (nothing is stored)."""
    new = dict(doc)
    if change.name is not None and change.name != doc.get("name"):
        taken = [d["name"] for _, d in txn.list(SERVERS)]
        new["name"] = _check_name(change.name, "kmipKeyServerName", taken)
    if change.hostnames is not None:
        new["hostnames"] = _check_hostnames(change.hostnames)
    if change.port is not None:
        new["port"] = change.port
    if change.ca_pem is not None:
        new["caPem"] = change.ca_pem
    if change.client_cert_pem is not None:
        new["clientCertPem"] = change.client_cert_pem
    _check_certs(new, ident)
    return new


def server_info(txn: Txn, doc: Doc) -> Doc:
    """The Element ``KeyServerKmip`` object."""
    provider_id = doc["keyProviderID"]
    active = None
    if provider_id is not None:
        active = is_active(get_provider(txn, provider_id))
    return {
        "keyServerID": doc["keyServerID"], "kmipKeyServerName": doc["name"],
        "kmipKeyServerHostnames": doc["hostnames"], "kmipKeyServerPort": doc["port"],
        "kmipCaCertificate": doc["caPem"], "kmipClientCertificate": doc["clientCertPem"],
        "keyProviderID": provider_id, "kmipAssignedProviderIsActive": active,
    }


def provider_info(doc: Doc) -> Doc:
    """The Element ``KeyProviderKmip`` object."""
    return {
        "keyProviderID": doc["keyProviderID"], "keyProviderName": doc["name"],
        "keyProviderIsActive": is_active(doc), "keyServerIDs": list(doc["keyServerIDs"]),
        "kmipCapabilities": "SSL",
    }


class KeyServerStore:
    """Reads and writes of key servers and providers; no network."""

    def __init__(self, store: ConfigStore, trust: TrustService, timeouts: Timeouts) -> None:
        self._store = store
        self._trust = trust
        self.timeouts = timeouts

    def endpoint(self, doc: Doc, ident: Identity) -> KmipEndpoint:
        return KmipEndpoint(
            hostnames=tuple(doc["hostnames"]), ca_pem=doc["caPem"].encode(),
            client_cert_pem=doc["clientCertPem"].encode(), client_key_pem=ident.private_key(),
            port=doc["port"], connect_timeout=self.timeouts.connect,
            operation_timeout=self.timeouts.operation,
        )

    def new_server(self, txn: Txn, change: ServerChange) -> Doc:
        ident = self._trust.require_identity(txn)
        base: Doc = {"keyProviderID": None, "createTime": now_iso(), "port": 5696}
        doc = apply_change(txn, base, change, ident)
        doc["keyServerID"] = txn.next_id(SERVERS)
        txn.put(SERVERS, doc["keyServerID"], doc)
        return doc

    def new_provider(self, txn: Txn, name: str) -> Doc:
        taken = [d["name"] for _, d in txn.list(PROVIDERS)]
        doc: Doc = {
            "keyProviderID": txn.next_id(PROVIDERS),
            "name": _check_name(name, "keyProviderName", taken),
            "keyServerIDs": [], "uses": [], "createTime": now_iso(),
        }
        txn.put(PROVIDERS, doc["keyProviderID"], doc)
        return doc

    def check_removable(self, txn: Txn, server: Doc, action: str) -> None:
        """Refuse to take the last server away from an active provider."""
        provider_id = server["keyProviderID"]
        if provider_id is None:
            return
        provider = get_provider(txn, provider_id)
        if is_active(provider) and len(provider["keyServerIDs"]) <= 1:
            raise NotPermitted(
                f"Key server {server['keyServerID']} is the last server of key provider "
                f"{provider_id}, which is active (its keys are in use: "
                f"{', '.join(provider['uses'])}); add another server to the provider before "
                f"you {action} this one."
            )

    def detach(self, txn: Txn, server: Doc) -> None:
        provider_id = server["keyProviderID"]
        if provider_id is None:
            return
        provider = get_provider(txn, provider_id)
        provider["keyServerIDs"] = [
            i for i in provider["keyServerIDs"] if i != server["keyServerID"]
        ]
        txn.put(PROVIDERS, provider_id, provider)
        server["keyProviderID"] = None
        txn.put(SERVERS, server["keyServerID"], server)

    def mark_in_use(self, txn: Txn, provider_id: int, use: str) -> None:
        """Record that keys of this provider are in use for ``use`` (it becomes active)."""
        provider = get_provider(txn, provider_id)
        if use not in provider["uses"]:
            provider["uses"] = [*provider["uses"], use]
            txn.put(PROVIDERS, provider_id, provider)

    def release(self, txn: Txn, provider_id: int, use: str) -> None:
        provider = txn.get(PROVIDERS, provider_id)
        if provider is not None and use in provider["uses"]:
            provider["uses"] = [u for u in provider["uses"] if u != use]
            txn.put(PROVIDERS, provider_id, provider)

    def servers_in_use(self, txn: Txn) -> list[int]:
        return [i for i, _ in txn.list(SERVERS)]

    def provider_endpoints(self, txn: Txn, provider_id: int) -> list[KmipEndpoint]:
        provider = get_provider(txn, provider_id)
        if not provider["keyServerIDs"]:
            raise NotPermitted(
                f"Key provider {provider_id} has no key servers; add one with "
                "AddKeyServerToProviderKmip."
            )
        ident = self._trust.require_identity(txn)
        return [self.endpoint(get_server(txn, i), ident) for i in provider["keyServerIDs"]]
