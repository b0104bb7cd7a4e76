"""The KMIP key provider methods."""

from __future__ import annotations

from sealbox.api.params import ID, P
from sealbox.api.registry import CallContext, Params, Result, method
from sealbox.cluster.formation import require_cluster
from sealbox.cluster.keyservers import (
    PROVIDERS,
    SERVERS,
    get_provider,
    get_server,
    is_active,
    provider_info,
)
from sealbox.cluster.keytests import test_endpoint, test_endpoints
from sealbox.errors import NotPermitted


@method("CreateKeyProviderKmip", P("keyProviderName", "str", required=True, max_len=128),
        category="clusterAdmin", mutates=True)
def create_key_provider_kmip(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    with c.store.write() as txn:
        require_cluster(txn)
        doc = c.keyservers.new_provider(txn, params["keyProviderName"])
    return {"kmipKeyProvider": provider_info(doc)}


@method("DeleteKeyProviderKmip", ID("keyProviderID"), category="clusterAdmin", mutates=True)
def delete_key_provider_kmip(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    with c.store.write() as txn:
        doc = get_provider(txn, params["keyProviderID"])
        if is_active(doc):
            raise NotPermitted(
                f"Key provider {doc['keyProviderID']} is active (its keys are in use: "
                f"{', '.join(doc['uses'])}); only inactive providers can be deleted. Keys in "
                "use move to another provider with RekeySoftwareEncryptionAtRestMasterKey (or "
                "go with DisableEncryptionAtRest); an old key awaiting destruction goes once "
                "its key server destroys it, or when its kmipServerFault is cleared."
            )
        for server_id in doc["keyServerIDs"]:
            server = get_server(txn, server_id)
            server["keyProviderID"] = None
            txn.put(SERVERS, server_id, server)
        txn.delete(PROVIDERS, doc["keyProviderID"])
    return {}


@method("AddKeyServerToProviderKmip", ID("keyProviderID"), ID("keyServerID"),
        category="clusterAdmin", mutates=True)
def add_key_server_to_provider_kmip(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    provider_id, server_id = params["keyProviderID"], params["keyServerID"]
    with c.store.read() as txn:
        get_provider(txn, provider_id)
        server = get_server(txn, server_id)
        if server["keyProviderID"] == provider_id:
            return {}
        if server["keyProviderID"] is not None:
            raise NotPermitted(
                f"Key server {server_id} already belongs to key provider "
                f"{server['keyProviderID']}; remove it from that provider first "
                "(RemoveKeyServerFromProviderKmip)."
            )
        endpoint = c.keyservers.endpoint(server, c.trust.require_identity(txn))
    test_endpoint(endpoint)  # a server that cannot be reached must not become a key source
    with c.store.write() as txn:
        provider, server = get_provider(txn, provider_id), get_server(txn, server_id)
        if server["keyProviderID"] is not None:
            raise NotPermitted(f"Key server {server_id} was assigned meanwhile; try again.")
        server["keyProviderID"] = provider_id
        provider["keyServerIDs"] = [*provider["keyServerIDs"], server_id]
        txn.put(SERVERS, server_id, server)
        txn.put(PROVIDERS, provider_id, provider)
    return {}


@method("RemoveKeyServerFromProviderKmip", ID("keyServerID"), category="clusterAdmin",
        mutates=True)
def remove_key_server_from_provider_kmip(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    with c.store.write() as txn:
        server = get_server(txn, params["keyServerID"])
        c.keyservers.check_removable(txn, server, "remove")
        c.keyservers.detach(txn, server)
    return {}


@method("GetKeyProviderKmip", ID("keyProviderID"))
def get_key_provider_kmip(ctx: CallContext, params: Params) -> Result:
    with ctx.cluster.store.read() as txn:
        return {"kmipKeyProvider": provider_info(get_provider(txn, params["keyProviderID"]))}


@method("ListKeyProvidersKmip", P("keyProviderIsActive", "bool"),
        P("kmipKeyProviderHasServerAssigned", "bool"))
def list_key_providers_kmip(ctx: CallContext, params: Params) -> Result:
    with ctx.cluster.store.read() as txn:
        infos = [provider_info(d) for _, d in txn.list(PROVIDERS)]
    active, assigned = params["keyProviderIsActive"], params["kmipKeyProviderHasServerAssigned"]
    return {"kmipKeyProviders": [
        i for i in infos
        if (active is None or i["keyProviderIsActive"] == active)
        and (assigned is None or bool(i["keyServerIDs"]) == assigned)
    ]}


@method("TestKeyProviderKmip", ID("keyProviderID"))
def test_key_provider_kmip(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    provider_id = params["keyProviderID"]
    with c.store.read() as txn:
        endpoints = c.keyservers.provider_endpoints(txn, provider_id)
        ids = get_provider(txn, provider_id)["keyServerIDs"]
    if len(ids) == 1:
        test_endpoint(endpoints[0])
    else:
        test_endpoints(provider_id, list(zip(ids, endpoints, strict=True)))
    return {}
