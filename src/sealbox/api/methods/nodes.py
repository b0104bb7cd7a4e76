"""ListActiveNodes, ListAllNodes, AddNodes."""

from __future__ import annotations

from sealbox.api.params import P
from sealbox.api.registry import CallContext, Params, Result, method
from sealbox.cluster.formation import require_cluster
from sealbox.cluster.topology import NodeState, node_info, pending_node_info


@method("ListActiveNodes", category="nodes", bootstrap=True)
def list_active_nodes(ctx: CallContext, params: Params) -> Result:
    return {"nodes": [node_info(n) for n in ctx.cluster.topology.nodes(NodeState.ACTIVE)]}


@method("ListAllNodes", category="nodes", bootstrap=True)
def list_all_nodes(ctx: CallContext, params: Params) -> Result:
    nodes = ctx.cluster.topology.nodes()
    return {
        "nodes": [node_info(n) for n in nodes if n["state"] == NodeState.ACTIVE],
        "pendingNodes": [pending_node_info(n) for n in nodes if n["state"] == NodeState.PENDING],
        "pendingActiveNodes": [],
    }


@method("AddNodes", P("pendingNodes", "int", required=True, array=True, minimum=1,
                      max_items=64),
        P("autoInstall", "bool"), category="nodes", mutates=True)
def add_nodes(ctx: CallContext, params: Params) -> Result:
    c = ctx.cluster
    with c.store.write() as txn:
        require_cluster(txn)
        added = c.nodes.add(txn, params["pendingNodes"])
    for _, handle in added:
        c.jobs.launch(handle)
    nodes = []
    for doc, handle in added:
        info = pending_node_info(doc)
        nodes.append({
            "pendingNodeID": doc["pendingNodeID"], "nodeID": doc["nodeID"],
            "assignedNodeID": doc["nodeID"], "activeNodeKey": "", "asyncHandle": handle,
            "cip": info["cip"], "mip": info["mip"], "sip": info["sip"],
            "platformInfo": info["platformInfo"], "softwareVersion": info["softwareVersion"],
        })
    return {"autoInstall": bool(params["autoInstall"]), "nodes": nodes}
