"""ListActiveNodes, ListAllNodes."""

from __future__ import annotations

from sealbox.api.registry import CallContext, Params, Result, method
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
