"""AddNodes: a pending node joins the cluster.

A node that was left out of ``CreateCluster`` (``sealbox up --no-create``, then a cluster of
some of the nodes) stays *pending*; its drives are not the cluster's (ListDrives does not list
them) until AddNodes makes it a member. Joining is one transaction: the node turns ``active``
and its drives appear ``available``, to be added with AddDrives as in Element. Element answers
with an async handle per node, which scripts poll; sealbox records the same async result
(``AddNode``) in that transaction, so it is complete as soon as the job runs, and after a crash
the job simply runs again (it only reports).
"""

from __future__ import annotations

from sealbox.cluster.jobs import JobContext, JobService
from sealbox.cluster.topology import NODES, NodeState
from sealbox.errors import InvalidParameter, NodeNotFound, NotPermitted
from sealbox.store.base import ConfigStore, Doc, Txn

ADD_NODE = "AddNode"


class NodeService:
    def __init__(self, store: ConfigStore, jobs: JobService) -> None:
        self._store = store
        self._jobs = jobs
        jobs.register(ADD_NODE, self._run_add)

    def add(self, txn: Txn, pending_ids: list[int]) -> list[tuple[Doc, int]]:
        """Make the pending nodes members, each with its async result; the whole request is
        checked first, so a bad ID changes nothing."""
        if not pending_ids:
            raise InvalidParameter("Invalid parameter 'pendingNodes': give at least one ID.")
        if len(set(pending_ids)) != len(pending_ids):
            raise InvalidParameter("Invalid parameter 'pendingNodes': an ID is repeated.")
        nodes = []
        for node_id in pending_ids:
            doc = txn.get(NODES, node_id)
            if doc is None:
                raise NodeNotFound(
                    f"Pending node {node_id} does not exist (see ListAllNodes, pendingNodes).")
            if doc["state"] != NodeState.PENDING:
                raise NotPermitted(f"Node {node_id} is already a member of the cluster.")
            nodes.append(doc)
        added = []
        for doc in nodes:
            doc["state"] = str(NodeState.ACTIVE)
            txn.put(NODES, doc["nodeID"], doc)
            added.append((doc, self._jobs.create(txn, ADD_NODE, {"nodeID": doc["nodeID"]})))
        return added

    def _run_add(self, ctx: JobContext) -> Doc:
        node_id = ctx.params["nodeID"]
        return {"nodeID": node_id, "pendingNodeID": node_id}
