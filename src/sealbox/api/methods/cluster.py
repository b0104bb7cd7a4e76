"""Cluster-wide methods: CreateCluster, GetClusterInfo, GetClusterState, GetClusterCapacity."""

from __future__ import annotations

from sealbox.api.params import P
from sealbox.api.registry import CallContext, Params, Result, method
from sealbox.cluster import formation


@method(
    "CreateCluster",
    P("mvip", "str", required=True, max_len=64),
    P("svip", "str", required=True, max_len=64),
    P("username", "str", required=True, max_len=64),
    P("password", "str", required=True, secret=True, max_len=1024),
    P("nodes", "str", required=True, array=True, max_len=256, max_items=1000),
    P("acceptEula", "bool"),
    P("attributes", "object"),
    P("serialNumber", "str", max_len=256),
    P("orderNumber", "str", max_len=256),
    P("enableSoftwareEncryptionAtRest", "bool", default=True),
    category="clusterAdmin", mutates=True, bootstrap=True,
)
def create_cluster(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    spec = formation.ClusterSpec(
        mvip=params["mvip"], svip=params["svip"], username=params["username"],
        password=params["password"], nodes=params["nodes"],
        software_encryption=params["enableSoftwareEncryptionAtRest"],
        attributes=params["attributes"],
    )
    with c.store.write() as txn:
        formation.create_cluster(txn, c.admins, spec)
        c.sear.initialise(txn, spec.software_encryption)
    c.storage.unavailable_reason = "no drives have been added yet (AddDrives)"
    c.drives.refresh_available_fault()
    return {}


@method("GetClusterInfo")
def get_cluster_info(ctx: CallContext, params: Params) -> Result:
    with ctx.cluster.store.read() as txn:
        return {"clusterInfo": formation.cluster_info(txn)}


@method("GetClusterState", P("force", "bool", default=False), bootstrap=True)
def get_cluster_state(ctx: CallContext, params: Params) -> Result:
    with ctx.cluster.store.read() as txn:
        return formation.cluster_state(txn, params["force"])


@method("GetClusterCapacity")
def get_cluster_capacity(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    engine = c.storage.engine
    used = 0 if engine is None else engine.used_bytes()
    provisioned = c.volumes.provisioned()
    with c.store.read() as txn:
        formation.require_cluster(txn)
        return {"clusterCapacity": formation.capacity(txn, used, provisioned)}
