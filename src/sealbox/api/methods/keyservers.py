"""The KMIP key server methods."""

from __future__ import annotations

from typing import Any

from sealbox.api.params import ID, P
from sealbox.api.registry import CallContext, Params, Result, method
from sealbox.cluster.formation import require_cluster
from sealbox.cluster.keyservers import SERVERS, ServerChange, apply_change, get_server, server_info
from sealbox.cluster.keytests import test_endpoint
from sealbox.errors import InvalidParameter, NotPermitted

_PEM = 64 * 1024


def _hostnames(name: str, raw: Any) -> list[str]:
    """An array of hostnames; the SDK sends a bare string as-is, which is taken as one."""
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or len(items) > 16 or not all(
            isinstance(h, str) for h in items):
        raise InvalidParameter(f"Invalid parameter '{name}': expected an array of hostnames.")
    return items


_FIELDS = (
    P("kmipCaCertificate", "str", max_len=_PEM),
    P("kmipClientCertificate", "str", max_len=_PEM),
    P("kmipKeyServerHostnames", "custom", convert=_hostnames),
    P("kmipKeyServerName", "str", max_len=128),
    P("kmipKeyServerPort", "int", minimum=1, maximum=65535),
)


def _change(params: Params) -> ServerChange:
    return ServerChange(
        name=params["kmipKeyServerName"], hostnames=params["kmipKeyServerHostnames"],
        port=params["kmipKeyServerPort"], ca_pem=params["kmipCaCertificate"],
        client_cert_pem=params["kmipClientCertificate"],
    )


@method("CreateKeyServerKmip",
        *(P(p.name, p.kind, required=p.name != "kmipKeyServerPort", max_len=p.max_len,
            minimum=p.minimum, maximum=p.maximum, convert=p.convert) for p in _FIELDS),
        category="clusterAdmin", mutates=True)
def create_key_server_kmip(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    with c.store.write() as txn:
        require_cluster(txn)
        doc = c.keyservers.new_server(txn, _change(params))
        info = server_info(txn, doc)
    c.certificates.check()
    return {"kmipKeyServer": info}


@method("ModifyKeyServerKmip", ID("keyServerID"), *_FIELDS, category="clusterAdmin",
        mutates=True)
def modify_key_server_kmip(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    with c.store.read() as txn:
        old = get_server(txn, params["keyServerID"])
        ident = c.trust.require_identity(txn)
        new = apply_change(txn, old, _change(params), ident)
    if any(new[k] != old[k] for k in ("hostnames", "port", "caPem", "clientCertPem")):
        # Test the new settings before they replace ones that may be working.
        test_endpoint(c.keyservers.endpoint(new, ident))
    with c.store.write() as txn:
        if get_server(txn, params["keyServerID"]) != old:
            raise NotPermitted("The key server changed while it was being tested; try again.")
        txn.put(SERVERS, new["keyServerID"], new)
        info = server_info(txn, new)
    c.certificates.check()
    return {"kmipKeyServer": info}


@method("DeleteKeyServerKmip", ID("keyServerID"), category="clusterAdmin", mutates=True)
def delete_key_server_kmip(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    with c.store.write() as txn:
        doc = get_server(txn, params["keyServerID"])
        c.keyservers.check_removable(txn, doc, "delete")
        c.keyservers.detach(txn, doc)
        txn.delete(SERVERS, doc["keyServerID"])
    c.certificates.check()
    return {}


@method("GetKeyServerKmip", ID("keyServerID"))
def get_key_server_kmip(ctx: CallContext, params: Params) -> Result:
    with ctx.cluster.store.read() as txn:
        return {"kmipKeyServer": server_info(txn, get_server(txn, params["keyServerID"]))}


@method("ListKeyServersKmip", ID("keyProviderID", required=False),
        P("kmipAssignedProviderIsActive", "bool"), P("kmipHasProviderAssigned", "bool"))
def list_key_servers_kmip(ctx: CallContext, params: Params) -> Result:
    with ctx.cluster.store.read() as txn:
        infos = [server_info(txn, d) for _, d in txn.list(SERVERS)]
    want_provider = params["keyProviderID"]
    want_active = params["kmipAssignedProviderIsActive"]
    want_assigned = params["kmipHasProviderAssigned"]
    return {"kmipKeyServers": [
        i for i in infos
        if (want_provider is None or i["keyProviderID"] == want_provider)
        and (want_active is None or bool(i["kmipAssignedProviderIsActive"]) == want_active)
        and (want_assigned is None or (i["keyProviderID"] is not None) == want_assigned)
    ]}


@method("TestKeyServerKmip", ID("keyServerID"))
def test_key_server_kmip(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    with c.store.read() as txn:
        doc = get_server(txn, params["keyServerID"])
        endpoint = c.keyservers.endpoint(doc, c.trust.require_identity(txn))
    test_endpoint(endpoint)
    return {}
